"""IEC 60601-2-24 arithmetic, the programmed line and measurement units: no board needed."""

from __future__ import annotations

import pytest

from bench import units
from bench.program import programmed
from bench.program.file import load_program
from bench.scenario import flow
from tests.bench.test_scenario_steps import PROGRAMS

DAY = 86_400_000


@pytest.mark.parametrize(
    ("rate_nl_day", "scale"),
    [
        (48_000, 60),  # minimum rate: a stroke every 6 min -> 120 h run
        (500_000, 6),  # 0.5 mL/day: a stroke every 34.6 s
        (1_000_000, 3),
        (4_000_000, 1),
        (24_000_000, 1),
    ],
)
def test_time_scale_puts_twenty_strokes_in_the_shortest_window(
    rate_nl_day: int, scale: int
) -> None:
    assert flow.auto_scale(rate_nl_day, 120_000, 20) == scale
    strokes = 120_000 * scale / flow.stroke_interval_ms(rate_nl_day)
    assert strokes >= 20


def test_a_perfect_pump_has_flat_curves() -> None:
    rate = 2_880_000  # nL/day: exactly 1 000 nL in every 30 s sample
    volumes = [i * 1_000 for i in range(241)]
    result = flow.analyse(
        volumes,
        sample_ms=30_000,
        rate_nl_day=rate,
        analysis_from_ms=3_600_000,
        windows_ms=[120_000, 1_860_000],
    )
    assert result.mean_error_pct == pytest.approx(0)
    assert result.startup_error_pct == pytest.approx(0)
    assert [(t.ep_max_pct, t.ep_min_pct) for t in result.trumpets] == [(0, 0), (0, 0)]
    assert result.volume_nl == 120_000
    assert len(result.flows_nl_day) == 240


def test_trumpet_extremes_come_from_the_worst_window() -> None:
    rate = 2_880_000  # 1 000 nL per 30 s sample
    deltas = [1_000] * 240
    deltas[150] = 1_500  # one sample 50 % high in the second hour
    deltas[151] = 500  # and the next 50 % low
    volumes = [0]
    for d in deltas:
        volumes.append(volumes[-1] + d)
    result = flow.analyse(
        volumes,
        sample_ms=30_000,
        rate_nl_day=rate,
        analysis_from_ms=3_600_000,
        windows_ms=[30_000, 60_000],
    )
    one, two = result.trumpets
    assert (one.ep_max_pct, one.ep_min_pct) == (pytest.approx(50), pytest.approx(-50))
    # a two-sample window straddling both averages out, one beside it sees half
    assert (two.ep_max_pct, two.ep_min_pct) == (pytest.approx(25), pytest.approx(-25))
    assert result.mean_error_pct == pytest.approx(0)
    assert result.fields()["ep_max_30s"] == pytest.approx(50)


def test_analysis_refuses_windows_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        flow.analyse([0, 1, 2], sample_ms=1, rate_nl_day=1, analysis_from_ms=1, windows_ms=[5])


def test_programmed_flex_week_matches_the_schedule_by_hand() -> None:
    fields = load_program(PROGRAMS / "baclofen-flex.toml")
    line = programmed.ProgrammedLine()
    line.confirm(0, fields)
    # weekdays 07:00-22:00 at 0.6 mL/day else 0.4; weekends from 09:00
    weekday = (15 * 0.6 + 9 * 0.4) / 24
    weekend = (13 * 0.6 + 11 * 0.4) / 24
    assert line.volume_at(7 * DAY) == pytest.approx((5 * weekday + 2 * weekend) * 1e6)
    line.stop(7 * DAY)
    assert line.volume_at(8 * DAY) == pytest.approx((5 * weekday + 2 * weekend) * 1e6)
    line.start(8 * DAY)
    line.bolus(8 * DAY, 50_000)
    assert line.volume_at(9 * DAY) == pytest.approx((6 * weekday + 2 * weekend) * 1e6 + 50_000)


def test_programmed_line_follows_the_local_clock() -> None:
    fields = load_program(PROGRAMS / "baclofen-flex.toml")
    line = programmed.ProgrammedLine()
    line.set_clock(0, 7 * 3600)  # device 00:00 is local 07:00: the day rate from the start
    line.confirm(0, fields)
    assert line.volume_at(3_600_000) == pytest.approx(600_000 / 24)


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("0.5 mL", "uL", 500),
        ("1h 30min", "min", 90),
        ("250", "uL", 250),
        ("-2 %", "%", -2),
        ("15 mmHg", "0.1 mmHg", 150),
        ("2.5 uL/h", "nL/day", 60_000),
    ],
)
def test_quantities(text: str, unit: str, value: float) -> None:
    assert units.parse(text, unit, bare=True, signed=True) == value


def test_conversions_stay_exact_where_they_can() -> None:
    assert units.convert(3_600_000, "ms", "h") == 1
    assert isinstance(units.convert(3_600_000, "ms", "h"), int)
    assert units.convert(150, "nL", "uL") == 0.15
    assert not units.convertible("nL", "ms")
    with pytest.raises(ValueError, match="minutes are min"):
        units.parse("10m", "s")


def test_a_timed_bolus_is_spread_over_its_duration() -> None:
    line = programmed.ProgrammedLine()
    line.bolus(0, 100_000, duration_ms=600_000)
    assert line.volume_at(180_000) == pytest.approx(30_000)
    assert line.volume_at(3_600_000) == pytest.approx(100_000)


def test_samples_read_late_are_put_back_on_the_grid() -> None:
    from bench.scenario.flow import on_grid

    # on the grid already (lockstep): unchanged
    assert on_grid([0, 10, 20], [0, 5, 9], 10) == [0, 5, 9]
    # read late: a steady 1 nL/ms line, sampled at 0, 12, 23, 31
    assert on_grid([0, 12, 23, 31], [0, 12, 23, 31], 10) == [0, 10, 20, 30]
