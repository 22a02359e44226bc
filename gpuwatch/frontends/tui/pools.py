"""The pool panel: an nginx upstream's members side by side, each one's share of the work
against the share its weight asks for, its tok/s, running requests and GPUs. Shown at the top
of the instance column, only when the snapshot has pools."""

from __future__ import annotations

from textual.content import Content

from ...model import Instance, Pool, PoolMember, Snapshot
from ..units import NA
from .render import bar
from .widgets import Card

_METHOD_TEXT = {"least_conn": "least_conn", "round_robin": "round robin", "ip_hash": "ip_hash", "hash": "hash",
                "random": "random", "least_time": "least_time"}


ONE_LINE_WIDTH = 66  # columns from which a member fits on one line


def share_basis(pool: Pool) -> tuple[str, str]:
    """(member attribute, words) of the share compared with the weights: least_conn evens out
    running requests per weight, round robin hands out requests per weight."""
    order = ("running_share", "request_share") if pool.method == "least_conn" else ("request_share", "running_share")
    for attr in order + ("token_share",):
        if any(getattr(m, attr) is not None for m in pool.members):
            break
    words = {"running_share": "running reqs", "request_share": "requests", "token_share": "tokens"}[attr]
    return attr, words


def _pct(x: float | None) -> str:
    return NA if x is None else f"{100 * x:.0f}%"


def member_lines(m: PoolMember, inst: Instance | None, basis: str, width: int) -> list[Content]:
    name = (m.instance or m.url.split("://", 1)[-1])[:14]
    share = getattr(m, basis)
    flags = [f for f in ("backup", "down") if getattr(m, f)]
    head: list = [(f"{name:<14} ", "bold")]
    if inst is not None and inst.status != "up":
        head += [(" DOWN ", "$error bold reverse"), " ", (inst.error or inst.status, "$error")]
    elif inst is None and not flags:
        head += [("not watched", "$text-muted")]
    elif flags:
        head += [(" ".join(flags), "$warning")]
    else:
        want = m.weight_share
        off = share is not None and want is not None and abs(share - want) > 0.15
        barw = 6 if width >= ONE_LINE_WIDTH else max(4, min(10, width - 30))
        head += [bar(share, barw, "$warning" if off else "$accent"), " ",
                 (f"{_pct(share):>4}", "$warning bold" if off else "bold"), ("/", "$text-muted"), _pct(want)]
    tail: list = [("  w", "$text-muted"), str(m.weight)]
    if inst is not None and inst.status == "up":
        tok = NA if inst.generation_tokens_per_s is None else f"{inst.generation_tokens_per_s:.1f}"
        run = NA if inst.requests_running is None else f"{inst.requests_running:.0f}"
        gpus = ",".join(map(str, inst.gpus)) if inst.gpus else "?"
        tail += [("  gen ", "$text-muted"), (tok, "bold"), (" tok/s", "$text-muted"), ("  run ", "$text-muted"), run,
                 ("  GPU ", "$text-muted"), gpus]
    if width >= ONE_LINE_WIDTH:  # a wide column (small terminals put it under the GPUs): one line each
        return [Content.assemble(*head, *tail)]
    return [Content.assemble(*head), Content.assemble(*tail)]


def pool_lines(pool: Pool, instances: dict[str, Instance], width: int) -> list[Content]:
    basis, words = share_basis(pool)
    window = f" ({pool.window_s:.0f} s)" if pool.window_s else ""
    lines = [Content.styled(f"{words}: share / weight{window}", "$text-muted")]
    for m in pool.members:
        lines += member_lines(m, instances.get(m.instance) if m.instance else None, basis, width)
    return lines


class PoolCard(Card):
    def __init__(self, name: str, **kw) -> None:
        super().__init__(**kw)
        self.name_key = name
        self._last: tuple | None = None

    def on_resize(self) -> None:
        if self._last is not None:  # one line or two per member depends on the width
            self.refresh_from(*self._last)

    def refresh_from(self, pool: Pool, instances: dict[str, Instance]) -> None:
        self._last = (pool, instances)
        outer = self.size.width
        if not outer and getattr(self.app, "compact", None):
            # before its first layout the card has no size; small terminals give it the full width
            outer = self.app.size.width - 2
        width = max(20, outer - 4) if outer > 0 else 40
        title = Content.assemble(("pool ", "$text-muted"), (pool.name, "bold"), " · ",
                                 _METHOD_TEXT.get(pool.method, pool.method))
        up = sum(1 for m in pool.members if m.instance and instances.get(m.instance) is not None
                 and instances[m.instance].status == "up")
        primaries = sum(1 for m in pool.members if not m.backup and not m.down)
        sub = Content.styled(f"{up}/{primaries} up", "$success" if up >= primaries else "$error bold")
        self.show(pool_lines(pool, instances, width), title, sub)
        self.set_class(up < primaries, "-down")


def paint_pools(box, snap: Snapshot, ids: dict[str, str]) -> None:
    """Keep one PoolCard per pool at the top of the instance column ``box``."""
    # the box's own children (a CSS query walks and matches every descendant, each tick)
    cards = {c.name_key: c for c in box.children if isinstance(c, PoolCard)}
    names = [p.name for p in snap.pools]
    for name, card in cards.items():
        if name not in names:
            card.remove()
    instances = {i.name: i for i in snap.instances}
    for pool in snap.pools:
        card = cards.get(pool.name)
        if card is None:
            card = PoolCard(pool.name, id=ids.setdefault(pool.name, f"pool-{len(ids)}"))
            box.mount(card, before=0)
        card.refresh_from(pool, instances)
