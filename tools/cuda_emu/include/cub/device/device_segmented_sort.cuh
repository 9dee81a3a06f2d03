// cuda_emu shim of <cub/device/device_segmented_sort.cuh>
#pragma once
#include "../cub_emu.h"
