// The FlashAttention-2 kernels' shared-memory swizzle and ldmatrix lane addresses, shared by host and device so the
// fragment bookkeeping is unit-tested on the CPU (tests/tst_fa2_layout.cpp) against the PTX ISA's fragment layouts.
#pragma once
#include "qls_kernels/host_device.h"

namespace qls_kernels::fa2 {

// Element offset of 16-byte chunk `chunk` (8 bf16) of row `row` in a [rows][D] tile: chunk c of row r is stored at
// chunk c ^ (r % 8) (CUTLASS / FlashAttention-2's Swizzle<3,3,3>), so the 8 rows an ldmatrix phase reads at one
// logical chunk sit on 8 distinct 16-byte bank groups. Needs D / 8 >= 8 (D 64, 128).
QLS_HD int swz(int D, int row, int chunk) { return row * D + ((chunk ^ (row & 7)) << 3); }

// ldmatrix.x4 row address of `lane` for a 16×16 block at (row0, chunk0) read as (rows 0-7, k 0-7), (rows 8-15,
// k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15): the mma A fragment a[0..3], and with .trans the B fragments
// b[0], b[1] of n tile 0 then n tile 1 when rows are k (V, dO, Q, K as the k-major operand).
QLS_HD int a_row(int lane) { return lane & 15; }
QLS_HD int a_chunk(int lane) { return lane >> 4; }

// ldmatrix.x4 (no .trans) row address of `lane` for a 16-row block whose rows are n and columns k (Kᵀ, Vᵀ, Qᵀ, dOᵀ
// as B): (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) = b[0], b[1] of n tile 0, then of tile 1.
QLS_HD int bt_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
QLS_HD int bt_chunk(int lane) { return (lane >> 3) & 1; }

} // namespace qls_kernels::fa2
