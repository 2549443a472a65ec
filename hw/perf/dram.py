"""DRAM model: the PS DDR reached through the PS-PL HP ports (spec §6.1; DESIGN.md facts).

Sustained bandwidth in bytes per kernel clock = min(ports x HP width / 8,
DDR peak x efficiency / clock).  On the ZCU104 at 300 MHz: 4 ports x 16 B = 64 B/cycle
(19.2 GB/s) against 17.064 GB/s x 0.7 = 11.9 GB/s = 39.8 B/cycle, so the DDR limits.
The efficiency is an assumption (long sequential bursts of weights and activations; no
measurement on a board has been recorded), stated in every report.
"""

from __future__ import annotations

from dataclasses import dataclass

from moevit.config import AcceleratorConfig


@dataclass(frozen=True)
class DramModel:
    ports: int
    port_bits: int
    peak_gbs: float
    efficiency: float
    clock_hz: float

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> "DramModel":
        return cls(cfg.mem_ports, cfg.hp_port_width, cfg.dram_peak_gbs, cfg.dram_efficiency,
                   cfg.clock_hz)

    @property
    def ports_bytes_per_cycle(self) -> float:
        return self.ports * self.port_bits / 8

    @property
    def ddr_bytes_per_cycle(self) -> float:
        return self.peak_gbs * 1e9 * self.efficiency / self.clock_hz

    @property
    def bytes_per_cycle(self) -> float:
        return min(self.ports_bytes_per_cycle, self.ddr_bytes_per_cycle)

    @property
    def limit(self) -> str:
        """Which side limits: 'ddr' or 'hp ports'."""
        return "ddr" if self.ddr_bytes_per_cycle <= self.ports_bytes_per_cycle else "hp ports"

    @property
    def sustained_gbs(self) -> float:
        return self.bytes_per_cycle * self.clock_hz / 1e9

    def cycles(self, nbytes: float) -> float:
        return nbytes / self.bytes_per_cycle

    def describe(self) -> dict:
        return dict(ports=self.ports, port_bits=self.port_bits, peak_gbs=self.peak_gbs,
                    efficiency=self.efficiency, sustained_gbs=round(self.sustained_gbs, 3),
                    bytes_per_cycle=round(self.bytes_per_cycle, 3), limit=self.limit)
