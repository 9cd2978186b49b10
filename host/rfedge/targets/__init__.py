"""Per-chip facts of the real boards rfedge flashes, as data (one small module per chip, like
esptool's targets/): the chip esptool reports, CPU, clock, SRAM, FPU, flash offsets of the
bootloader / partition table / application, and the build targets (ESP-IDF, PlatformIO).

    from rfedge.targets import get_target, TARGETS
    t = get_target("esp32c3"); t.app_offset  # 0x10000
"""

from __future__ import annotations

from dataclasses import dataclass

from rfedge.errors import RfedgeError

from . import esp32, esp32c3, esp32s3


@dataclass(frozen=True)
class Target:
    name: str                   # rfedge board name = ESP-IDF target = esptool --chip
    chip_name: str              # what esptool's detect_chip() reports (CHIP_NAME)
    cpu: str
    isa: str
    cores: int
    clock_hz: int               # default CPU clock of the firmware (CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ)
    max_clock_hz: int
    sram_bytes: int
    fpu: str                    # "single" (hardware single precision) or "none" (soft-float)
    bootloader_offset: int
    partition_table_offset: int
    app_offset: int
    flash_size: str             # assumed by our sdkconfig.defaults / platformio.ini
    idf_target: str
    platformio_board: str
    esptool_chip_id: int | None  # IMAGE_CHIP_ID (GET_SECURITY_INFO), None: detected by magic value
    notes: str = ""

    @property
    def images(self) -> dict[str, int]:
        """Offset of each image of an ESP-IDF build."""
        return {"bootloader": self.bootloader_offset, "partition-table": self.partition_table_offset,
                "app": self.app_offset}


def _load(mod) -> Target:
    return Target(**{k: getattr(mod, k.upper()) for k in Target.__dataclass_fields__ if hasattr(mod, k.upper())})


TARGETS: dict[str, Target] = {t.name: t for t in (_load(esp32), _load(esp32s3), _load(esp32c3))}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise RfedgeError(f"unknown ESP target {name!r}; known: {', '.join(TARGETS)}") from None
