// cuda_emu shim of <cub/device/device_radix_sort.cuh>
#pragma once
#include "../cub_emu.h"
