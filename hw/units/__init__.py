"""moevit.hw.units: Amaranth arithmetic and datapath units."""
