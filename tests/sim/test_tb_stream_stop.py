"""The stream drivers' stopping rule (pure Python, no simulator)."""

from moevit.sim.tb_stream import Port, StreamSink, StreamSource, _Stop


class _Sig:
    value = 0


def _port():
    return Port(_Sig(), _Sig(), _Sig())


def test_sources_only_run_until_drained():
    """A weight load (sources, no sinks) must not stop after the settle window with beats
    still untaken: the edge-moe gate's 192 weight beats take longer than that."""
    src = StreamSource(_port(), items=range(200))
    stop = _Stop([src])
    assert not any(stop(c) for c in range(1000))
    src.idx = 200
    assert stop(1000)


def test_full_sinks_stop_after_the_settle_window_with_inputs_left():
    src, snk = StreamSource(_port(), items=range(10)), StreamSink(_port(), 1)
    stop = _Stop([src, snk])
    assert not stop(0)
    snk.items.append(0)
    from moevit.sim.tb_stream import SETTLE_CYCLES
    assert not stop(1) and stop(1 + SETTLE_CYCLES)
