"""AXI4 and AXI4-Lite interface signatures (master's view) for the accelerator top.

Member names are the AXI signal names in lower case (``awaddr``, ``rready``, ...), so that a
component port ``m_axi__awaddr`` is found by cocotbext-axi as ``AxiBus.from_prefix(dut,
"m_axi_")`` and the Vivado wrapper (:mod:`moevit.hw.top.wrapper`) can name its ports
``<bus>_<signal>``.  AXI4 masters carry the ID signals (cocotbext-axi 0.1.28 needs them).
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: AXI burst type INCR and response OKAY (AMBA AXI spec, A3.4.1 / A3.4.4)
BURST_INCR = 0b01
RESP_OKAY = 0b00
#: AxCACHE for a normal non-cacheable bufferable access (what HLS m_axi masters emit)
CACHE_BUFFERABLE = 0b0011
#: no burst may cross a 4 KiB address boundary; an AXI4 INCR burst has at most 256 beats
BOUNDARY_BYTES = 4096
MAX_BURST_BEATS = 256


def axi_lite_members(addr_width: int, data_width: int = 32) -> dict:
    """AXI4-Lite members from the master's side (flip for a slave)."""
    return {
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    }


def axi_lite_signature(addr_width: int, data_width: int = 32) -> wiring.Signature:
    return wiring.Signature(axi_lite_members(addr_width, data_width))


def axi4_read_members(addr_width: int, data_width: int, id_width: int) -> dict:
    """AR and R channel members of an AXI4 master."""
    return {
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arlock": Out(1), "arcache": Out(4), "arprot": Out(3),
        "arqos": Out(4), "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    }


def axi4_write_members(addr_width: int, data_width: int, id_width: int) -> dict:
    """AW, W and B channel members of an AXI4 master."""
    return {
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awlock": Out(1), "awcache": Out(4), "awprot": Out(3),
        "awqos": Out(4), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    }


def axi4_signature(addr_width: int, data_width: int, id_width: int = 1) -> wiring.Signature:
    """A full AXI4 master (read and write channels)."""
    return wiring.Signature({**axi4_read_members(addr_width, data_width, id_width),
                             **axi4_write_members(addr_width, data_width, id_width)})


def connect_members(m, outer, inner, members: dict) -> None:
    """Wire the ``members`` of interface ``inner`` (a sub-component's master port) to the
    same-named members of ``outer`` (this component's master port): Out members flow
    inner → outer, In members outer → inner."""
    for name, member in members.items():
        if member.flow == wiring.Out:
            m.d.comb += getattr(outer, name).eq(getattr(inner, name))
        else:
            m.d.comb += getattr(inner, name).eq(getattr(outer, name))
