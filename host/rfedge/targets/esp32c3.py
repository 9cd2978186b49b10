"""ESP32-C3: RISC-V rv32imc single core, no FPU (the ISA of the qemu-rv32 virtual board)."""
NAME = "esp32c3"
CHIP_NAME = "ESP32-C3"
CPU = "RISC-V"
ISA = "rv32imc"
CORES = 1
CLOCK_HZ = 160_000_000
MAX_CLOCK_HZ = 160_000_000
SRAM_BYTES = 400 * 1024
FPU = "none"
BOOTLOADER_OFFSET = 0x0
PARTITION_TABLE_OFFSET = 0x8000
APP_OFFSET = 0x10000
FLASH_SIZE = "4MB"
IDF_TARGET = "esp32c3"
PLATFORMIO_BOARD = "esp32-c3-devkitm-1"
ESPTOOL_CHIP_ID = 5
NOTES = "float and double are both soft-float"
