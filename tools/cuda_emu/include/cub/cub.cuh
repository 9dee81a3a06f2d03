// cuda_emu shim of <cub/cub.cuh>
#pragma once
#include "cub_emu.h"
