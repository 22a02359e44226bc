/*
 * cnvml: a compiled stand-in for libnvidia-ml.so.1, for tests and benchmarks without a GPU.
 *
 * pynvml (nvidia-ml-py) finds it through its normal library search (CDLL("libnvidia-ml.so.1")
 * with LD_LIBRARY_PATH pointing at the build directory) and calls its exported C functions
 * exactly as it calls a driver's: nothing in the calling process is replaced or patched.
 *
 * It answers for one simulated box (default: an HGX H100 8-GPU board on driver 550) whose
 * load, power, temperatures, clocks and cumulative byte counters are closed-form functions of
 * wall-clock time, so every process that loads the library sees the same box.
 *
 * Signatures, structure layouts, enum values and return codes follow NVIDIA's nvml.h
 * (checked against the copy in github.com/NVIDIA/go-nvml, gen/nvml/nvml.h, NVML API 13):
 * the layouts are re-declared below, not copied. Static values of the H100 come from
 * `nvidia-smi -q` captures of H100 80GB HBM3 boards (81559 MiB total, thresholds 92/89/87 C,
 * 700 W limit, PCIe Gen5 x16, 18 NVLinks) - see the table in h100_spec below.
 *
 * Configuration (read once, at the first nvmlInit):
 *   GPUWATCH_CNVML_GPUS      number of GPUs (1..256, default 8)
 *   GPUWATCH_CNVML_BUSY_US   busy time of every call in microseconds (default 0), spent in
 *                            system calls so that, as with a real driver's ioctl, it is the
 *                            calling process's CPU time, mostly in the kernel
 *   GPUWATCH_CNVML_PCIE_SAMPLE_MS  how long nvmlDeviceGetPcieThroughput blocks (default 20,
 *                            as the driver samples the link for 20 ms)
 *   GPUWATCH_CNVML_DRIVER    driver version string (default "550.127.05"); drivers >= 555
 *                            answer the PCIe byte-count fields 197/198
 *   GPUWATCH_CNVML_UNKNOWN_FIELD_RC  per-field nvmlReturn for a field this driver does not know
 *                            (default 3, NOT_SUPPORTED; 2 reproduces INVALID_ARGUMENT answers)
 *   GPUWATCH_CNVML_ACCUMULATE=1  field values are ADDED to the caller's value instead of
 *                            overwriting it (the driver bug reported in NVIDIA/go-nvml#46)
 *   GPUWATCH_CNVML_LOST      comma-separated GPU indices that are lost from the start:
 *                            counted by nvmlDeviceGetCount, GPU_IS_LOST from GetHandleByIndex
 *   GPUWATCH_CNVML_PROCS     compute processes: "PID:GPUS[:MIB],..." where GPUS is "3",
 *                            "0-3" or "4+6" (default MIB 66000 per process per GPU). When
 *                            set, GPUs without a process are idle; when unset every GPU is
 *                            busy and no process is listed.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- nvml.h return codes (nvmlReturn_t) -------------------------------------------------- */
typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

/* ---- nvml.h structures, field ids and enum values used here ------------------------------ */
#define NVML_STRUCT_VERSION(size, ver) ((unsigned int)(size) | ((unsigned int)(ver) << 24))

typedef struct cnvml_device *nvmlDevice_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned long long bar1Total, bar1Free, bar1Used; } nvmlBAR1Memory_t;
typedef struct { unsigned int version; int sensorType; int temperature; } nvmlTemperature_t;
typedef struct { unsigned int version; int marginTemperature; } nvmlMarginTemperature_t;

typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;
typedef struct {
    unsigned int pid; unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_v2_t; /* also the layout of the _v3 functions' nvmlProcessInfo_t */
typedef struct {
    unsigned int pid; unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
    unsigned long long usedGpuCcProtectedMemory;
} nvmlProcessDetail_v1_t;
typedef struct {
    unsigned int version, mode, numProcArrayEntries;
    nvmlProcessDetail_v1_t *procArray;
} nvmlProcessDetailList_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef union {
    double dVal; int siVal; unsigned int uiVal; unsigned long ulVal;
    unsigned long long ullVal; signed long long sllVal; unsigned short usVal;
} nvmlValue_t;
typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

enum { NVML_VALUE_TYPE_UNSIGNED_INT = 1, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3 };
enum { NVML_FI_DEV_NVLINK_LINK_COUNT = 91, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138,
       NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139, NVML_FI_DEV_PCIE_COUNT_TX_BYTES = 197,
       NVML_FI_DEV_PCIE_COUNT_RX_BYTES = 198 };
enum { NVML_TEMPERATURE_GPU = 0 };
enum { NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1,
       NVML_TEMPERATURE_THRESHOLD_MEM_MAX = 2, NVML_TEMPERATURE_THRESHOLD_GPU_MAX = 3 };
enum { NVML_CLOCK_GRAPHICS = 0, NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2, NVML_CLOCK_VIDEO = 3 };
enum { NVML_PCIE_UTIL_TX_BYTES = 0, NVML_PCIE_UTIL_RX_BYTES = 1 };
enum { NVML_TOPOLOGY_INTERNAL = 0, NVML_TOPOLOGY_NODE = 40, NVML_TOPOLOGY_SYSTEM = 50 };
enum { NVML_NVLINK_DEVICE_TYPE_SWITCH = 2 };
enum { NVML_PROCESS_MODE_COMPUTE = 0, NVML_PROCESS_MODE_GRAPHICS = 1, NVML_PROCESS_MODE_MPS = 2 };
#define NVML_BRAND_NVIDIA 14
#define NVML_DEVICE_ARCH_HOPPER 9
/* clock-event reason bits */
#define REASON_GPU_IDLE 0x1ULL
#define REASON_SW_POWER_CAP 0x4ULL

#define MAX_GPUS 256
#define MAX_PROCS 64
#define TAU 6.283185307179586

/* ---- the simulated GPU model: an HGX H100 SXM5 board ------------------------------------- */
/* Static values, as nvidia-smi -q shows them on H100 80GB HBM3 (driver 550): FB total 81559
 * MiB, reserved ~512 MiB; shutdown/slowdown/max-operating 92/89/87 C, memory max 95 C;
 * default and enforced power limit 700 W (range 200-700 W); max clocks SM 1980 MHz, memory
 * 2619 MHz; PCIe Gen5 x16; 18 NVLinks through NVSwitch; no fan (fan speed N/A). */
static const struct {
    const char *name;
    unsigned long long mem_total, mem_reserved, bar1_total;
    unsigned int t_shutdown, t_slowdown, t_gpu_max, t_mem_max;
    unsigned int power_max_mw, power_min_mw, power_idle_mw;
    unsigned int sm_max_mhz, sm_idle_mhz, mem_mhz;
    unsigned int pcie_gen, pcie_width, nvlinks;
    unsigned int pci_device_id, pci_subsystem_id;
} h100_spec = {
    "NVIDIA H100 80GB HBM3",
    81559ULL << 20, 512ULL << 20, 131072ULL << 20,
    92, 89, 87, 95,
    700000, 200000, 72000,
    1980, 345, 2619,
    5, 16, 18,
    0x233010DE, 0x16C110DE,
};
/* PCI bus numbers of the eight GPUs on an HGX H100 baseboard; beyond 8 GPUs each block of 8
 * sits in its own PCI domain. */
static const unsigned int hgx_bus[8] = {0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB};
#define CPUS_PER_NODE 56 /* two 56-core sockets, GPUs 0-3 on node 0 and 4-7 on node 1 */

struct cnvml_device { int index; };

struct proc { unsigned int pid; unsigned long long mem; unsigned char gpus[MAX_GPUS]; };

static struct {
    int count;
    long busy_ns;
    long pcie_sample_ns;
    char driver[64];
    int driver_major;
    nvmlReturn_t unknown_field_rc;
    int accumulate;
    unsigned char lost[MAX_GPUS];
    int have_procs;
    int nprocs;
    struct proc procs[MAX_PROCS];
    struct cnvml_device devices[MAX_GPUS];
} cfg;

static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;

static long env_long(const char *name, long dflt, long lo, long hi) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) return dflt;
    return v;
}

/* "3", "0-3" or "4+6" -> marks in gpus[] */
static void parse_gpu_list(const char *s, unsigned char *gpus) {
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (end == s) return;
        if (*end == '-') b = strtol(end + 1, &end, 10);
        for (long g = a; g <= b && g < MAX_GPUS; g++)
            if (g >= 0) gpus[g] = 1;
        s = end;
        if (*s == '+') s++;
        else return;
    }
}

static void load_config(void) {
    cfg.count = (int)env_long("GPUWATCH_CNVML_GPUS", 8, 1, MAX_GPUS);
    cfg.busy_ns = env_long("GPUWATCH_CNVML_BUSY_US", 0, 0, 1000000) * 1000L;
    cfg.pcie_sample_ns = env_long("GPUWATCH_CNVML_PCIE_SAMPLE_MS", 20, 0, 10000) * 1000000L;
    cfg.unknown_field_rc = (nvmlReturn_t)env_long("GPUWATCH_CNVML_UNKNOWN_FIELD_RC", NVML_ERROR_NOT_SUPPORTED, 1, 999);
    cfg.accumulate = (int)env_long("GPUWATCH_CNVML_ACCUMULATE", 0, 0, 1);
    const char *drv = getenv("GPUWATCH_CNVML_DRIVER");
    snprintf(cfg.driver, sizeof cfg.driver, "%s", drv && *drv ? drv : "550.127.05");
    cfg.driver_major = atoi(cfg.driver);
    for (int i = 0; i < MAX_GPUS; i++) cfg.devices[i].index = i;
    const char *lost = getenv("GPUWATCH_CNVML_LOST");
    while (lost && *lost) {
        char *end;
        long g = strtol(lost, &end, 10);
        if (end == lost) break;
        if (g >= 0 && g < MAX_GPUS) cfg.lost[g] = 1;
        lost = *end == ',' ? end + 1 : end;
        if (*end != ',') break;
    }
    const char *procs = getenv("GPUWATCH_CNVML_PROCS");
    if (procs && *procs) {
        cfg.have_procs = 1;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", procs);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok && cfg.nprocs < MAX_PROCS; tok = strtok_r(NULL, ",", &save)) {
            char *gpus = strchr(tok, ':');
            if (!gpus) continue;
            *gpus++ = 0;
            char *mib = strchr(gpus, ':');
            if (mib) *mib++ = 0;
            struct proc *p = &cfg.procs[cfg.nprocs];
            memset(p, 0, sizeof *p);
            p->pid = (unsigned int)strtoul(tok, NULL, 10);
            p->mem = (mib ? strtoull(mib, NULL, 10) : 66000ULL) << 20;
            parse_gpu_list(gpus, p->gpus);
            if (p->pid) cfg.nprocs++;
        }
    }
}

/* ---- time and the per-call cost --------------------------------------------------------- */
static long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* wall-clock seconds since 2023-11-14 (a fixed epoch keeps the counters small and the same in
 * every process that loads the library) */
static double box_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)(ts.tv_sec - 1700000000LL) + ts.tv_nsec * 1e-9;
}

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* A driver call is an ioctl: CPU time of the caller, spent in the kernel. Spin on a cheap
 * system call until the configured time has passed. */
static void driver_cost(void) {
    if (!cfg.busy_ns) return;
    long long end = mono_ns() + cfg.busy_ns;
    do {
        syscall(SYS_getppid);
    } while (mono_ns() < end);
}

#define ENTER()                                                     \
    do {                                                            \
        pthread_once(&cfg_once, load_config);                       \
        driver_cost();                                              \
        if (!__atomic_load_n(&init_count, __ATOMIC_ACQUIRE))        \
            return NVML_ERROR_UNINITIALIZED;                        \
    } while (0)

/* the GPU behind a handle; returns from the caller on a bad or lost handle */
#define DEVICE(handle, idx)                                                     \
    int idx;                                                                    \
    do {                                                                        \
        ENTER();                                                                \
        if ((handle) < cfg.devices || (handle) >= cfg.devices + cfg.count)      \
            return NVML_ERROR_INVALID_ARGUMENT;                                 \
        idx = (handle)->index;                                                  \
        if (cfg.lost[idx]) return NVML_ERROR_GPU_IS_LOST;                       \
    } while (0)

#define OUT(p) do { if (!(p)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

/* ---- the dynamic model ------------------------------------------------------------------ */
static int gpu_busy(int i) {
    if (!cfg.have_procs) return 1;
    for (int k = 0; k < cfg.nprocs; k++)
        if (cfg.procs[k].gpus[i]) return 1;
    return 0;
}

/* load in [0, 1]: a slow wave and a fast ripple, out of phase from GPU to GPU */
static double gpu_load(int i, double t) {
    if (!gpu_busy(i)) return 0.0;
    double v = 0.62 + 0.25 * sin(TAU * t / 45.0 + 0.9 * i) + 0.08 * sin(TAU * t / 6.1 + 1.7 * i);
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* integral from 0 to t of mean + amp*sin(2 pi t/period + phase): a cumulative counter whose
 * rate stays between mean - amp and mean + amp */
static unsigned long long counter(double mean, double amp, double period, double phase, double t) {
    double w = TAU / period;
    return (unsigned long long)(mean * t - amp / w * (cos(w * t + phase) - cos(phase)));
}

static double rate(double mean, double amp, double period, double phase, double t) {
    return mean + amp * sin(TAU / period * t + phase);
}

/* PCIe bytes per second: host<->GPU traffic of a serving GPU (a few GB/s, 64 GB/s link) */
#define PCIE_TX(i, busy) (busy ? 2.0e9 : 4.0e5), (busy ? 1.2e9 : 1.0e5), 31.0, 0.4 * (i)
#define PCIE_RX(i, busy) (busy ? 3.0e9 : 6.0e5), (busy ? 1.5e9 : 1.0e5), 37.0, 0.7 * (i)
/* NVLink KiB per second per link: tensor-parallel all-reduce traffic */
#define NVL_TX(i, l, busy) (busy ? 4.0e6 : 0.0), (busy ? 2.5e6 : 0.0), 23.0, 0.3 * (i) + 0.2 * (l)
#define NVL_RX(i, l, busy) (busy ? 4.1e6 : 0.0), (busy ? 2.5e6 : 0.0), 29.0, 0.5 * (i) + 0.2 * (l)

static unsigned long long proc_mem_on(int i) {
    unsigned long long used = 0;
    for (int k = 0; k < cfg.nprocs; k++)
        if (cfg.procs[k].gpus[i]) used += cfg.procs[k].mem;
    return used;
}

static unsigned long long mem_used(int i) {
    unsigned long long used = cfg.have_procs ? proc_mem_on(i) : 68000ULL << 20;
    unsigned long long cap = h100_spec.mem_total - h100_spec.mem_reserved;
    return used > cap ? cap : used;
}

static unsigned int power_mw(int i, double t) {
    double l = gpu_load(i, t);
    return (unsigned int)(h100_spec.power_idle_mw + l * (660000 - h100_spec.power_idle_mw));
}

static unsigned int temperature(int i, double t) {
    return (unsigned int)lround(31.0 + 0.5 * (i % 3) + gpu_load(i, t) * 36.0);
}

static unsigned int sm_clock(int i, double t) {
    double l = gpu_load(i, t);
    return l < 0.02 ? h100_spec.sm_idle_mhz : (unsigned int)(h100_spec.sm_max_mhz - 180 * l);
}

static int numa_node(int i) { return (i % 8) / 4; }

static void fill_pci(int i, nvmlPciInfo_t *pci) {
    memset(pci, 0, sizeof *pci);
    pci->domain = (unsigned int)(i / 8);
    pci->bus = hgx_bus[i % 8];
    pci->device = 0;
    pci->pciDeviceId = h100_spec.pci_device_id;
    pci->pciSubSystemId = h100_spec.pci_subsystem_id;
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
}

static int copy_string(char *buf, unsigned int length, const char *s) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

/* ---- library and system ------------------------------------------------------------------ */
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    pthread_once(&cfg_once, load_config);
    driver_cost();
    pthread_mutex_lock(&init_lock);
    init_count++;
    pthread_mutex_unlock(&init_lock);
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    ENTER();
    pthread_mutex_lock(&init_lock);
    if (init_count > 0) init_count--;
    pthread_mutex_unlock(&init_lock);
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    ENTER();
    return copy_string(version, length, cfg.driver);
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    ENTER();
    char buf[80];
    snprintf(buf, sizeof buf, "12.%s", cfg.driver); /* NVML version = CUDA major + driver */
    return copy_string(version, length, buf);
}

/* driver 550 ships CUDA 12.4, 555 CUDA 12.5, 560 12.6, 565 12.7, 570 12.8, 575 12.9, 580 13.0 */
static int cuda_version(void) {
    int m = cfg.driver_major;
    if (m >= 580) return 13000;
    if (m >= 575) return 12090;
    if (m >= 570) return 12080;
    if (m >= 565) return 12070;
    if (m >= 560) return 12060;
    if (m >= 555) return 12050;
    if (m >= 550) return 12040;
    if (m >= 545) return 12030;
    if (m >= 535) return 12020;
    return 12000;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { ENTER(); OUT(v); *v = cuda_version(); return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { ENTER(); OUT(v); *v = cuda_version(); return NVML_SUCCESS; }

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { ENTER(); OUT(count); *count = (unsigned int)cfg.count; return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    ENTER();
    OUT(device);
    if (index >= (unsigned int)cfg.count) return NVML_ERROR_INVALID_ARGUMENT;
    if (cfg.lost[index]) return NVML_ERROR_GPU_IS_LOST;
    *device = &cfg.devices[index];
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

/* ---- identity ------------------------------------------------------------------------------ */
static void uuid_of(int i, char *out, size_t n) {
    /* stable, distinct, in the driver's format GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx */
    unsigned long long h = 0xcbf29ce484222325ULL ^ (unsigned long long)(i + 1);
    unsigned long long a = h * 0x100000001b3ULL, b = (a ^ 0x9e3779b97f4a7c15ULL) * 0xff51afd7ed558ccdULL;
    snprintf(out, n, "GPU-%08llx-%04llx-%04llx-%04llx-%012llx", a >> 32, (a >> 16) & 0xffff,
             0x4000 | (a & 0x0fff), 0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffffULL);
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *name, unsigned int length) {
    DEVICE(h, i); (void)i;
    return copy_string(name, length, h100_spec.name);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *uuid, unsigned int length) {
    DEVICE(h, i);
    char buf[96];
    uuid_of(i, buf, sizeof buf);
    return copy_string(uuid, length, buf);
}

EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t h, char *serial, unsigned int length) {
    DEVICE(h, i);
    char buf[32];
    snprintf(buf, sizeof buf, "1654923%06d", 1000 + i);
    return copy_string(serial, length, buf);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t h, unsigned int *index) {
    DEVICE(h, i); OUT(index); *index = (unsigned int)i; return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t h, unsigned int *minor) {
    DEVICE(h, i); OUT(minor); *minor = (unsigned int)i; return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    ENTER();
    OUT(uuid); OUT(device);
    char buf[96];
    for (int i = 0; i < cfg.count; i++) {
        uuid_of(i, buf, sizeof buf);
        if (!strcmp(buf, uuid)) {
            if (cfg.lost[i]) return NVML_ERROR_GPU_IS_LOST;
            *device = &cfg.devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device) {
    ENTER();
    OUT(bus_id); OUT(device);
    nvmlPciInfo_t pci;
    for (int i = 0; i < cfg.count; i++) {
        fill_pci(i, &pci);
        if (!strcasecmp(pci.busId, bus_id) || !strcasecmp(pci.busIdLegacy, bus_id)) {
            if (cfg.lost[i]) return NVML_ERROR_GPU_IS_LOST;
            *device = &cfg.devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t h, nvmlPciInfo_t *pci) {
    DEVICE(h, i); OUT(pci); fill_pci(i, pci); return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t h, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(h, pci); }
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t h, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(h, pci); }

EXPORT nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t h, unsigned int *arch) {
    DEVICE(h, i); (void)i; OUT(arch); *arch = NVML_DEVICE_ARCH_HOPPER; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t h, int *brand) {
    DEVICE(h, i); (void)i; OUT(brand); *brand = NVML_BRAND_NVIDIA; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t h, int *major, int *minor) {
    DEVICE(h, i); (void)i; OUT(major); OUT(minor); *major = 9; *minor = 0; return NVML_SUCCESS;
}

/* ---- modes: persistence on, ECC on, MIG off, headless, Linux (no driver model) ------------- */
EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t h, int *mode) {
    DEVICE(h, i); (void)i; OUT(mode); *mode = 1; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t h, int *mode) {
    DEVICE(h, i); (void)i; OUT(mode); *mode = 0; /* NVML_COMPUTEMODE_DEFAULT */ return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetDisplayActive(nvmlDevice_t h, int *active) {
    DEVICE(h, i); (void)i; OUT(active); *active = 0; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetDisplayMode(nvmlDevice_t h, int *mode) {
    DEVICE(h, i); (void)i; OUT(mode); *mode = 0; return NVML_SUCCESS;
}
/* WDDM/TCC exist on Windows only: NOT_SUPPORTED on Linux (nvml.h) */
EXPORT nvmlReturn_t nvmlDeviceGetDriverModel_v2(nvmlDevice_t h, int *current, int *pending) {
    DEVICE(h, i); (void)i; (void)current; (void)pending; return NVML_ERROR_NOT_SUPPORTED;
}
EXPORT nvmlReturn_t nvmlDeviceGetDriverModel(nvmlDevice_t h, int *current, int *pending) {
    return nvmlDeviceGetDriverModel_v2(h, current, pending);
}
EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t h, unsigned int *current, unsigned int *pending) {
    DEVICE(h, i); (void)i; OUT(current); OUT(pending); *current = 0; *pending = 0; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t h, unsigned int *is_mig) {
    DEVICE(h, i); (void)i; OUT(is_mig); *is_mig = 0; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t h, unsigned int *count) {
    DEVICE(h, i); (void)i; OUT(count); *count = 7; return NVML_SUCCESS;
}
/* MIG is off: no MIG device at any index; a physical GPU's handle has no instance ids */
EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t h, unsigned int index, nvmlDevice_t *mig) {
    DEVICE(h, i); (void)i; (void)index; OUT(mig); return NVML_ERROR_NOT_FOUND;
}
EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t h, unsigned int *id) {
    DEVICE(h, i); (void)i; (void)id; return NVML_ERROR_NOT_SUPPORTED;
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t h, unsigned int *id) {
    DEVICE(h, i); (void)i; (void)id; return NVML_ERROR_NOT_SUPPORTED;
}

/* NVSwitch fabric (HGX): registered with the fabric manager, as nvidia-smi -q shows on a
 * healthy HGX H100 ("Fabric State: Completed, Status: Success"). The first call (R525+) has
 * no version; the V call (R550+) takes nvmlGpuFabricInfo_v2 or _v3. */
typedef struct {
    unsigned char clusterUuid[16];
    nvmlReturn_t status;
    unsigned int cliqueId;
    unsigned char state;
} nvmlGpuFabricInfo_t;
typedef struct {
    unsigned int version;
    unsigned char clusterUuid[16];
    nvmlReturn_t status;
    unsigned int cliqueId;
    unsigned char state;
    unsigned int healthMask;
    unsigned char healthSummary; /* v3 only */
} nvmlGpuFabricInfo_v3_t;
#define NVML_GPU_FABRIC_STATE_COMPLETED 3

EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfo(nvmlDevice_t h, nvmlGpuFabricInfo_t *info) {
    DEVICE(h, i); (void)i; OUT(info);
    memset(info, 0, sizeof *info);
    info->status = NVML_SUCCESS;
    info->cliqueId = (unsigned int)(i / 8);
    info->state = NVML_GPU_FABRIC_STATE_COMPLETED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t h, nvmlGpuFabricInfo_v3_t *info) {
    DEVICE(h, i); OUT(info);
    unsigned int v2 = NVML_STRUCT_VERSION(offsetof(nvmlGpuFabricInfo_v3_t, healthSummary), 2);
    unsigned int v3 = NVML_STRUCT_VERSION(sizeof(nvmlGpuFabricInfo_v3_t), 3);
    unsigned int version = info->version;
    if (version != v2 && version != v3) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memset(info, 0, version == v3 ? sizeof *info : offsetof(nvmlGpuFabricInfo_v3_t, healthSummary));
    info->version = version;
    info->status = NVML_SUCCESS;
    info->cliqueId = (unsigned int)(i / 8);
    info->state = NVML_GPU_FABRIC_STATE_COMPLETED;
    info->healthMask = 2; /* NVML_GPU_FABRIC_HEALTH_MASK_DEGRADED_BW_FALSE */
    return NVML_SUCCESS;
}

/* confidential computing off: the function exists (R535+), the feature does not */
EXPORT nvmlReturn_t nvmlDeviceGetConfComputeMemSizeInfo(nvmlDevice_t h, void *info) {
    DEVICE(h, i); (void)i; (void)info; return NVML_ERROR_NOT_SUPPORTED;
}

/* ---- utilization and memory ---------------------------------------------------------------- */
EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t h, nvmlUtilization_t *u) {
    DEVICE(h, i); OUT(u);
    double l = gpu_load(i, box_time());
    u->gpu = (unsigned int)lround(100 * l);
    u->memory = (unsigned int)lround(62 * l);
    return NVML_SUCCESS;
}

/* v1 counts the driver's reserved memory as used (why v2 exists) */
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *m) {
    DEVICE(h, i); OUT(m);
    m->total = h100_spec.mem_total;
    m->used = mem_used(i) + h100_spec.mem_reserved;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t h, nvmlMemory_v2_t *m) {
    DEVICE(h, i); OUT(m);
    if (m->version != NVML_STRUCT_VERSION(sizeof(nvmlMemory_v2_t), 2)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    m->total = h100_spec.mem_total;
    m->reserved = h100_spec.mem_reserved;
    m->used = mem_used(i);
    m->free = m->total - m->reserved - m->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t h, nvmlBAR1Memory_t *b) {
    DEVICE(h, i); (void)i; OUT(b);
    b->bar1Total = h100_spec.bar1_total;
    b->bar1Used = 2ULL << 20;
    b->bar1Free = b->bar1Total - b->bar1Used;
    return NVML_SUCCESS;
}

/* LLM serving does not use NVENC/NVDEC; the driver's sampling period is 167 ms */
EXPORT nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t h, unsigned int *u, unsigned int *period) {
    DEVICE(h, i); (void)i; OUT(u); OUT(period); *u = 0; *period = 167000; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t h, unsigned int *u, unsigned int *period) {
    DEVICE(h, i); (void)i; OUT(u); OUT(period); *u = 0; *period = 167000; return NVML_SUCCESS;
}

/* ---- temperature, power, clocks -------------------------------------------------------------- */
EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t h, int sensor, unsigned int *temp) {
    DEVICE(h, i); OUT(temp);
    if (sensor != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = temperature(i, box_time());
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t h, nvmlTemperature_t *t) {
    DEVICE(h, i); OUT(t);
    if (t->version != NVML_STRUCT_VERSION(sizeof(nvmlTemperature_t), 1)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (t->sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    t->temperature = (int)temperature(i, box_time());
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t h, int which, unsigned int *temp) {
    DEVICE(h, i); (void)i; OUT(temp);
    switch (which) {
    case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: *temp = h100_spec.t_shutdown; return NVML_SUCCESS;
    case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: *temp = h100_spec.t_slowdown; return NVML_SUCCESS;
    case NVML_TEMPERATURE_THRESHOLD_MEM_MAX: *temp = h100_spec.t_mem_max; return NVML_SUCCESS;
    case NVML_TEMPERATURE_THRESHOLD_GPU_MAX: *temp = h100_spec.t_gpu_max; return NVML_SUCCESS;
    default: return NVML_ERROR_NOT_SUPPORTED; /* acoustic and GPS thresholds: GeForce/other parts */
    }
}

/* degrees below the GPU's thermal limit (nvidia-smi's "T.Limit"), here the max operating temp */
EXPORT nvmlReturn_t nvmlDeviceGetMarginTemperature(nvmlDevice_t h, nvmlMarginTemperature_t *m) {
    DEVICE(h, i); OUT(m);
    if (m->version != NVML_STRUCT_VERSION(sizeof(nvmlMarginTemperature_t), 1)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    m->marginTemperature = (int)h100_spec.t_gpu_max - (int)temperature(i, box_time());
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t h, unsigned int *mw) {
    DEVICE(h, i); OUT(mw); *mw = power_mw(i, box_time()); return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t h, unsigned int *mw) {
    DEVICE(h, i); (void)i; OUT(mw); *mw = h100_spec.power_max_mw; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t h, unsigned int *mw) {
    DEVICE(h, i); (void)i; OUT(mw); *mw = h100_spec.power_max_mw; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t h, unsigned int *mw) {
    DEVICE(h, i); (void)i; OUT(mw); *mw = h100_spec.power_max_mw; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t h, unsigned int *min, unsigned int *max) {
    DEVICE(h, i); (void)i; OUT(min); OUT(max);
    *min = h100_spec.power_min_mw; *max = h100_spec.power_max_mw;
    return NVML_SUCCESS;
}
/* H100 SXM has no fan of its own (nvidia-smi: "Fan Speed: N/A") */
EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t h, unsigned int *speed) {
    DEVICE(h, i); (void)i; (void)speed; return NVML_ERROR_NOT_SUPPORTED;
}
EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t h, unsigned int fan, unsigned int *speed) {
    DEVICE(h, i); (void)i; (void)fan; (void)speed; return NVML_ERROR_NOT_SUPPORTED;
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t h, int type, unsigned int *mhz) {
    DEVICE(h, i); OUT(mhz);
    switch (type) {
    case NVML_CLOCK_GRAPHICS: case NVML_CLOCK_SM: *mhz = sm_clock(i, box_time()); return NVML_SUCCESS;
    case NVML_CLOCK_MEM: *mhz = h100_spec.mem_mhz; return NVML_SUCCESS;
    case NVML_CLOCK_VIDEO: *mhz = 1545; return NVML_SUCCESS;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t h, int type, unsigned int *mhz) {
    DEVICE(h, i); (void)i; OUT(mhz);
    switch (type) {
    case NVML_CLOCK_GRAPHICS: case NVML_CLOCK_SM: *mhz = h100_spec.sm_max_mhz; return NVML_SUCCESS;
    case NVML_CLOCK_MEM: *mhz = h100_spec.mem_mhz; return NVML_SUCCESS;
    case NVML_CLOCK_VIDEO: *mhz = 1965; return NVML_SUCCESS;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

/* H100/H200 stay in P0 at idle */
EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t h, int *pstate) {
    DEVICE(h, i); (void)i; OUT(pstate); *pstate = 0; return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t h, unsigned long long *reasons) {
    DEVICE(h, i); OUT(reasons);
    double t = box_time();
    double l = gpu_load(i, t);
    *reasons = l < 0.02 ? REASON_GPU_IDLE : (power_mw(i, t) > 0.9 * h100_spec.power_max_mw ? REASON_SW_POWER_CAP : 0);
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t h, unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksEventReasons(h, reasons);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t h, int type, int counter, unsigned long long *count) {
    DEVICE(h, i); (void)i; (void)type; (void)counter; OUT(count); *count = 0; return NVML_SUCCESS;
}

/* ---- PCIe ------------------------------------------------------------------------------------ */
EXPORT nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t h, unsigned int *gen) {
    DEVICE(h, i); (void)i; OUT(gen); *gen = h100_spec.pcie_gen; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t h, unsigned int *gen) {
    DEVICE(h, i); (void)i; OUT(gen); *gen = h100_spec.pcie_gen; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetGpuMaxPcieLinkGeneration(nvmlDevice_t h, unsigned int *gen) {
    DEVICE(h, i); (void)i; OUT(gen); *gen = h100_spec.pcie_gen; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t h, unsigned int *width) {
    DEVICE(h, i); (void)i; OUT(width); *width = h100_spec.pcie_width; return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t h, unsigned int *width) {
    DEVICE(h, i); (void)i; OUT(width); *width = h100_spec.pcie_width; return NVML_SUCCESS;
}

/* KB/s over a sample that the driver takes while the caller waits (20 ms) */
EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t h, int counter, unsigned int *kbps) {
    DEVICE(h, i); OUT(kbps);
    if (counter != NVML_PCIE_UTIL_TX_BYTES && counter != NVML_PCIE_UTIL_RX_BYTES) return NVML_ERROR_INVALID_ARGUMENT;
    if (cfg.pcie_sample_ns) {
        struct timespec ts = {cfg.pcie_sample_ns / 1000000000L, cfg.pcie_sample_ns % 1000000000L};
        nanosleep(&ts, NULL);
    }
    int busy = gpu_busy(i);
    double t = box_time();
    double r = counter == NVML_PCIE_UTIL_TX_BYTES ? rate(PCIE_TX(i, busy), t) : rate(PCIE_RX(i, busy), t);
    *kbps = (unsigned int)(r / 1000.0);
    return NVML_SUCCESS;
}

/* ---- NVLink: every link up, to an NVSwitch ----------------------------------------------------- */
EXPORT nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t h, unsigned int link, int *active) {
    DEVICE(h, i); (void)i; OUT(active);
    if (link >= h100_spec.nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
    *active = 1;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNvLinkVersion(nvmlDevice_t h, unsigned int link, unsigned int *version) {
    DEVICE(h, i); (void)i; OUT(version);
    if (link >= h100_spec.nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
    *version = 4; /* NVLink 4 on Hopper */
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t h, unsigned int link, int *type) {
    DEVICE(h, i); (void)i; OUT(type);
    if (link >= h100_spec.nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
    *type = NVML_NVLINK_DEVICE_TYPE_SWITCH;
    return NVML_SUCCESS;
}

/* four NVSwitches per baseboard; their PCI addresses are not GPUs' */
EXPORT nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t h, unsigned int link, nvmlPciInfo_t *pci) {
    DEVICE(h, i); OUT(pci);
    if (link >= h100_spec.nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    pci->domain = (unsigned int)(i / 8);
    pci->bus = 0xC0 + link % 4;
    pci->pciDeviceId = 0x22A310DE;
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", pci->domain, pci->bus, 0);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain, pci->bus, 0);
    return NVML_SUCCESS;
}

/* ---- field values: cumulative counters ----------------------------------------------------------- */
static void put_ull(nvmlFieldValue_t *v, unsigned long long x) {
    v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
    v->value.ullVal = cfg.accumulate ? v->value.ullVal + x : x;
}

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t h, int count, nvmlFieldValue_t *values) {
    DEVICE(h, i);
    if (count < 0 || (count > 0 && !values)) return NVML_ERROR_INVALID_ARGUMENT;
    double t = box_time();
    long long ts = now_us();
    int busy = gpu_busy(i);
    for (int k = 0; k < count; k++) {
        nvmlFieldValue_t *v = &values[k];
        unsigned int link = v->scopeId;
        v->timestamp = ts;
        v->latencyUsec = 0;
        v->nvmlReturn = NVML_SUCCESS;
        switch (v->fieldId) {
        case NVML_FI_DEV_NVLINK_LINK_COUNT:
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = cfg.accumulate ? v->value.uiVal + h100_spec.nvlinks : h100_spec.nvlinks;
            break;
        case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
        case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: {
            int tx = v->fieldId == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX;
            if (link == 0xFFFFFFFFu) { /* all links together */
                unsigned long long sum = 0;
                for (unsigned int l = 0; l < h100_spec.nvlinks; l++)
                    sum += tx ? counter(NVL_TX(i, l, busy), t) : counter(NVL_RX(i, l, busy), t);
                put_ull(v, sum);
            } else if (link >= h100_spec.nvlinks) {
                v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
            } else {
                put_ull(v, tx ? counter(NVL_TX(i, link, busy), t) : counter(NVL_RX(i, link, busy), t));
            }
            break;
        }
        case NVML_FI_DEV_PCIE_COUNT_TX_BYTES:
        case NVML_FI_DEV_PCIE_COUNT_RX_BYTES:
            /* the PCIe byte counters arrived with driver R555 */
            if (cfg.driver_major < 555) {
                v->nvmlReturn = cfg.unknown_field_rc;
            } else {
                put_ull(v, v->fieldId == NVML_FI_DEV_PCIE_COUNT_TX_BYTES ? counter(PCIE_TX(i, busy), t)
                                                                       : counter(PCIE_RX(i, busy), t));
            }
            break;
        default:
            v->nvmlReturn = cfg.unknown_field_rc;
        }
    }
    return NVML_SUCCESS;
}

/* ---- NUMA, affinity, topology (x86: the GPU's own NUMA id is not supported) ------------------------ */
EXPORT nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t h, unsigned int *node) {
    DEVICE(h, i); (void)i; (void)node; return NVML_ERROR_NOT_SUPPORTED;
}

static void set_bits(unsigned long *set, unsigned int words, int first, int n) {
    memset(set, 0, words * sizeof *set);
    for (int b = first; b < first + n; b++)
        if ((unsigned int)b / (8 * sizeof *set) < words) set[b / (8 * sizeof *set)] |= 1UL << (b % (8 * sizeof *set));
}

EXPORT nvmlReturn_t nvmlDeviceGetCpuAffinity(nvmlDevice_t h, unsigned int words, unsigned long *set) {
    DEVICE(h, i); OUT(set);
    set_bits(set, words, numa_node(i) * CPUS_PER_NODE, CPUS_PER_NODE);
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCpuAffinityWithinScope(nvmlDevice_t h, unsigned int words, unsigned long *set, unsigned int scope) {
    (void)scope;
    return nvmlDeviceGetCpuAffinity(h, words, set);
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryAffinity(nvmlDevice_t h, unsigned int words, unsigned long *set, unsigned int scope) {
    DEVICE(h, i); OUT(set); (void)scope;
    set_bits(set, words, numa_node(i), 1);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t a, nvmlDevice_t b, int *level) {
    DEVICE(a, i);
    if (b < cfg.devices || b >= cfg.devices + cfg.count) return NVML_ERROR_INVALID_ARGUMENT;
    int j = b->index;
    if (cfg.lost[j]) return NVML_ERROR_GPU_IS_LOST;
    OUT(level);
    *level = i == j ? NVML_TOPOLOGY_INTERNAL
           : (i / 8 == j / 8 && numa_node(i) == numa_node(j)) ? NVML_TOPOLOGY_NODE : NVML_TOPOLOGY_SYSTEM;
    return NVML_SUCCESS;
}

/* ---- processes ------------------------------------------------------------------------------------- */
/* the two-call protocol: too small a buffer (or NULL) -> the count and INSUFFICIENT_SIZE; none -> 0 */
#define RUNNING_PROCESSES(name, type, fill)                                                       \
    EXPORT nvmlReturn_t name(nvmlDevice_t h, unsigned int *count, type *infos) {                  \
        DEVICE(h, i); OUT(count);                                                                 \
        unsigned int n = 0;                                                                       \
        for (int k = 0; k < cfg.nprocs; k++) n += cfg.procs[k].gpus[i];                           \
        if (*count < n || (n && !infos)) { *count = n; return NVML_ERROR_INSUFFICIENT_SIZE; }      \
        unsigned int m = 0;                                                                       \
        for (int k = 0; k < cfg.nprocs; k++) {                                                    \
            if (!cfg.procs[k].gpus[i]) continue;                                                  \
            type *p = &infos[m++];                                                                \
            memset(p, 0, sizeof *p);                                                              \
            p->pid = cfg.procs[k].pid;                                                            \
            p->usedGpuMemory = cfg.procs[k].mem;                                                  \
            fill                                                                                  \
        }                                                                                         \
        *count = n;                                                                               \
        return NVML_SUCCESS;                                                                      \
    }

#define NO_MIG p->gpuInstanceId = 0xFFFFFFFFu; p->computeInstanceId = 0xFFFFFFFFu;
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses_v3, nvmlProcessInfo_v2_t, NO_MIG)
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses_v2, nvmlProcessInfo_v2_t, NO_MIG)
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses, nvmlProcessInfo_v1_t, )

/* no display server on a headless box: no graphics or MPS processes */
#define NO_PROCESSES(name, type)                                                                  \
    EXPORT nvmlReturn_t name(nvmlDevice_t h, unsigned int *count, type *infos) {                  \
        DEVICE(h, i); (void)i; (void)infos; OUT(count); *count = 0; return NVML_SUCCESS;          \
    }
NO_PROCESSES(nvmlDeviceGetGraphicsRunningProcesses_v3, nvmlProcessInfo_v2_t)
NO_PROCESSES(nvmlDeviceGetGraphicsRunningProcesses_v2, nvmlProcessInfo_v2_t)
NO_PROCESSES(nvmlDeviceGetGraphicsRunningProcesses, nvmlProcessInfo_v1_t)
NO_PROCESSES(nvmlDeviceGetMPSComputeRunningProcesses_v3, nvmlProcessInfo_v2_t)
NO_PROCESSES(nvmlDeviceGetMPSComputeRunningProcesses_v2, nvmlProcessInfo_v2_t)
NO_PROCESSES(nvmlDeviceGetMPSComputeRunningProcesses, nvmlProcessInfo_v1_t)

EXPORT nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t h, nvmlProcessDetailList_t *list) {
    DEVICE(h, i); OUT(list);
    if (list->version != NVML_STRUCT_VERSION(sizeof(nvmlProcessDetailList_t), 1)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned int n = 0;
    if (list->mode == NVML_PROCESS_MODE_COMPUTE)
        for (int k = 0; k < cfg.nprocs; k++) n += cfg.procs[k].gpus[i];
    else if (list->mode != NVML_PROCESS_MODE_GRAPHICS && list->mode != NVML_PROCESS_MODE_MPS)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (list->numProcArrayEntries < n || (n && !list->procArray)) {
        list->numProcArrayEntries = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int m = 0;
    for (int k = 0; k < cfg.nprocs && list->mode == NVML_PROCESS_MODE_COMPUTE; k++) {
        if (!cfg.procs[k].gpus[i]) continue;
        nvmlProcessDetail_v1_t *p = &list->procArray[m++];
        memset(p, 0, sizeof *p);
        p->pid = cfg.procs[k].pid;
        p->usedGpuMemory = cfg.procs[k].mem;
        p->gpuInstanceId = p->computeInstanceId = 0xFFFFFFFFu;
    }
    list->numProcArrayEntries = n;
    return NVML_SUCCESS;
}

/* per-process samples newer than last_seen (us); NULL buffer -> the count and INSUFFICIENT_SIZE;
 * NOT_FOUND when there is no sample */
EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t h, nvmlProcessUtilizationSample_t *samples,
                                                    unsigned int *count, unsigned long long last_seen) {
    DEVICE(h, i); OUT(count);
    (void)last_seen;
    unsigned int n = 0;
    for (int k = 0; k < cfg.nprocs; k++) n += cfg.procs[k].gpus[i];
    if (!n) { *count = 0; return NVML_ERROR_NOT_FOUND; }
    if (!samples || *count < n) { *count = n; return NVML_ERROR_INSUFFICIENT_SIZE; }
    double l = gpu_load(i, box_time());
    unsigned long long ts = (unsigned long long)now_us();
    unsigned int m = 0;
    for (int k = 0; k < cfg.nprocs; k++) {
        if (!cfg.procs[k].gpus[i]) continue;
        nvmlProcessUtilizationSample_t *s = &samples[m++];
        s->pid = cfg.procs[k].pid;
        s->timeStamp = ts;
        s->smUtil = (unsigned int)lround(100 * l / n);
        s->memUtil = (unsigned int)lround(62 * l / n);
        s->encUtil = s->decUtil = 0;
    }
    *count = n;
    return NVML_SUCCESS;
}
