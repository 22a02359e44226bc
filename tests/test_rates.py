from gpuwatch.collect.rates import CounterRates


def test_first_reading_has_no_rate_then_steady_rate():
    r = CounterRates()
    assert r.update("k", 1000, 10.0) is None
    assert r.update("k", 3000, 12.0) == 1000.0
    assert r.update("k", 3000, 13.0) == 0.0


def test_32_bit_counter_wrap_is_a_small_step_not_a_reset():
    r = CounterRates()
    top = 2**32
    r.update("k", top - 500, 0.0, bits=32)
    assert r.update("k", 1500, 1.0, bits=32) == 2000.0


def test_64_bit_counter_wrap():
    r = CounterRates()
    r.update("k", 2**64 - 10, 0.0)
    assert r.update("k", 30, 2.0) == 20.0


def test_reset_reports_no_rate_and_resumes_from_the_new_base():
    r = CounterRates()
    r.update("k", 5_000_000, 0.0)
    assert r.update("k", 100, 1.0) is None  # driver reload / server restart: never negative
    assert r.update("k", 600, 2.0) == 500.0


def test_missing_value_or_zero_interval_gives_none():
    r = CounterRates()
    r.update("k", 10, 1.0)
    assert r.update("k", 20, 1.0) is None
    assert r.update("k", None, 2.0) is None
    assert r.update("k", 50, 3.0) is None  # forgotten after the gap: a fresh start
    assert r.update("k", 80, 4.0) == 30.0
