// cuda_emu shim of <cub/device/device_scan.cuh>
#pragma once
#include "../cub_emu.h"
