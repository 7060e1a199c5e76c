"""A Mac for `doctor`, on any machine: the real captured outputs of tests/unit/hw_samples
as what sysctl, ioreg and system_profiler print, and MLX reporting Metal."""

from __future__ import annotations

from pathlib import Path

from mlx_stack.services.doctor import Machine
from mlx_stack.system.sysinfo import MacRaw, MlxInfo

SAMPLES = Path(__file__).parent / "unit" / "hw_samples"
GIB = 1024**3

# A 16 GB M4 (perf levels as macOS names them), plus the lines read_mac asks for.
M4_SYSCTL = (
    "hw.memsize: 17179869184\nhw.physicalcpu: 10\nhw.nperflevels: 2\n"
    "hw.perflevel0.physicalcpu: 4\nhw.perflevel0.name: Performance\n"
    "hw.perflevel1.physicalcpu: 6\nhw.perflevel1.name: Efficiency\n"
    "machdep.cpu.brand_string: Apple M4\nsysctl.proc_translated: 0\niogpu.wired_limit_mb: 0\n"
)
# What system_profiler prints, with the identifiers a report must never carry.
M4_SP_HARDWARE = (
    '{"SPHardwareDataType":[{"chip_type":"Apple M4","machine_model":"Mac16,10",'
    '"number_processors":"proc 10:4:6","physical_memory":"16 GB",'
    '"serial_number":"C02FAKESERIAL","platform_UUID":"00000000-1111-2222-3333-444444444444",'
    '"provisioning_UDID":"00008112-FAKEUDID"}]}'
)
SERIALS = ("C02FAKESERIAL", "00000000-1111-2222-3333-444444444444", "00008112-FAKEUDID")


class FakeMac(Machine):
    platform = "darwin"

    def __init__(self, sysctl: str = M4_SYSCTL, *, arch: str = "arm64", metal: bool = True,
                 working_set: int | None = 12 * GIB, ioreg: str | None = None) -> None:
        self.sysctl = sysctl
        self._arch = arch
        self.metal = metal
        self.working_set = working_set if metal else None
        self.ioreg = (SAMPLES / "m4.ioreg-AGXAccelerator.txt").read_text() if ioreg is None else ioreg

    def arch(self) -> str:
        return self._arch

    def os_release(self) -> str:
        return "macOS 15.5"

    def is_apple_silicon(self) -> bool:
        return True

    def read_mac(self) -> MacRaw:
        return MacRaw(self.sysctl, self.ioreg, (SAMPLES / "m4.SPDisplaysDataType.json").read_text(),
                      M4_SP_HARDWARE, self.working_set)

    def mlx(self) -> MlxInfo:
        if not self.metal:
            return MlxInfo(True, None, False, "Device(cpu, 0)", None)
        return MlxInfo(True, None, True, "Device(gpu, 0)",
                       {"device_name": "Apple M4", "max_recommended_working_set_size": self.working_set})

    def version(self, dist: str) -> str | None:
        if dist == "mlx-metal":  # the Metal half of MLX, installed with it on macOS
            return super().version("mlx")
        return super().version(dist)
