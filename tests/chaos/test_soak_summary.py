"""The soak's RSS verdict (tests/chaos/soak.py): warm-up left out, a least-squares slope."""

from __future__ import annotations

from tests.chaos.soak import Sampler


def _summary(rss: list[float]) -> dict:
    sampler = Sampler(run=None, every_s=60.0, warmup_samples=2)
    sampler.samples = [{"t_min": float(i), "done": 1000 * i, "rss_mb": {"w0": v}, "table_mb": 1.0 + i,
                        "index_mb": 0.5 + i / 2} for i, v in enumerate(rss)]
    return sampler.summary()


def test_a_steady_leak_shows_its_slope_after_warm_up():
    # given 30 samples: a 50-MB warm-up, then +0.5 MB every minute
    rss = [400.0, 430.0, 450.0] + [450.0 + 0.5 * i for i in range(1, 28)]
    # when summarised; then the warm-up is left out and the slope is the leak's
    got = _summary(rss)["rss_after_warmup_mb"]
    assert got["from_min"] == 3.0
    assert abs(got["slope_mb_per_min"] - 0.5) < 1e-9
    assert got["growth_pct_per_hour"] > 5


def test_flat_memory_with_one_late_step_is_nearly_flat():
    # given 30 flat samples after warm-up and one 2-MB step in the last minute
    rss = [400.0, 430.0, 450.0] + [450.0] * 26 + [452.0]
    # when summarised; then the slope is far below last-minus-first over the span (2 MB / 26 min)
    got = _summary(rss)["rss_after_warmup_mb"]
    assert 0 < got["slope_mb_per_min"] < 0.03
    assert got["last"] - got["first"] == 2.0


def test_bytes_per_message_come_from_the_first_and_last_samples():
    # given 10 samples, 9 000 messages, 9 MB of table and 4.5 MB of index growth
    got = _summary([400.0] * 10)
    # then each message cost 1 MiB / 1 000 of table and half that of index
    assert got["table_bytes_per_message"] == round(9 * 2**20 / 9000)
    assert got["index_bytes_per_message"] == round(4.5 * 2**20 / 9000)
