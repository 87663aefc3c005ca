// The FlashAttention-2 kernels' fragment bookkeeping on the CPU: swizzled tiles, ldmatrix lane addresses
// (qls_kernels/fa2_layout.h) and mma.m16n8k16 emulated per the PTX ISA's fragment tables give S = Q Kᵀ and O = P V.
#include "testutil.h"

#include "qls_kernels/fa2_layout.h"

#include <array>
#include <random>
#include <set>
#include <vector>

namespace fa2 = qls_kernels::fa2;

namespace {

using regs = std::array<std::array<float, 2>, 4>; // one lane's four 32-bit registers of an ldmatrix.x4, as pairs
using warp_regs = std::array<regs, 32>;

// ldmatrix.sync.aligned.m8n8.x4[.trans].b16 (PTX ISA): lanes 8i..8i+7 give the row addresses of matrix i; lane
// 4g + t receives in register i row g, columns 2t, 2t+1 of matrix i; with .trans rows 2t, 2t+1 of column g.
warp_regs ldmatrix_x4(const std::vector<float>& smem, const std::array<int, 32>& addr, bool trans) {
    warp_regs out{};
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; ++i)
            for (int e = 0; e < 2; ++e) {
                const int row = trans ? 2 * t + e : g, col = trans ? g : 2 * t + e;
                out[size_t(lane)][size_t(i)][size_t(e)] = smem[size_t(addr[size_t(8 * i + row)] + col)];
            }
    }
    return out;
}

// mma.m16n8k16 (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type"): A a[0..3] = (g, 2t..),
// (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); B b[0..1] = (k 2t.., n g), (k 2t+8.., n g); C (g, 2t..), (g+8, 2t..).
void mma(std::array<std::array<float, 4>, 32>& c, const std::array<std::array<std::array<float, 2>, 4>, 32>& a,
         const std::array<std::array<std::array<float, 2>, 2>, 32>& b) {
    float A[16][16], B[16][8];
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int e = 0; e < 2; ++e) {
            A[g][2 * t + e] = a[size_t(lane)][0][size_t(e)];
            A[g + 8][2 * t + e] = a[size_t(lane)][1][size_t(e)];
            A[g][2 * t + 8 + e] = a[size_t(lane)][2][size_t(e)];
            A[g + 8][2 * t + 8 + e] = a[size_t(lane)][3][size_t(e)];
            B[2 * t + e][g] = b[size_t(lane)][0][size_t(e)];
            B[2 * t + 8 + e][g] = b[size_t(lane)][1][size_t(e)];
        }
    }
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int e = 0; e < 4; ++e) {
            const int r = g + (e >= 2 ? 8 : 0), n = 2 * t + (e & 1);
            float s = 0;
            for (int k = 0; k < 16; ++k) s += A[r][k] * B[k][n];
            c[size_t(lane)][size_t(e)] += s;
        }
    }
}

using cfrag = std::array<std::array<float, 4>, 32>; // one n8 tile of C, per lane
using afrag = std::array<std::array<std::array<float, 2>, 4>, 32>;
using bfrag = std::array<std::array<std::array<float, 2>, 2>, 32>;

bfrag pick_b(const warp_regs& r, int first) {
    bfrag b{};
    for (int lane = 0; lane < 32; ++lane) {
        b[size_t(lane)][0] = r[size_t(lane)][size_t(first)];
        b[size_t(lane)][1] = r[size_t(lane)][size_t(first + 1)];
    }
    return b;
}

// warp_abt of attention_fa2.cu: s (8 n8 tiles) = A rows [a_row0, +16) of a_tile · b_tileᵀ (64 rows), tiles [64][D].
std::array<cfrag, 8> warp_abt(int D, const std::vector<float>& a_tile, int a_row0, const std::vector<float>& b_tile) {
    std::array<cfrag, 8> s{};
    for (int kk = 0; kk < D / 16; ++kk) {
        std::array<int, 32> aa{};
        for (int lane = 0; lane < 32; ++lane)
            aa[size_t(lane)] = fa2::swz(D, a_row0 + fa2::a_row(lane), 2 * kk + fa2::a_chunk(lane));
        const warp_regs a = ldmatrix_x4(a_tile, aa, false);
        for (int j = 0; j < 4; ++j) {
            std::array<int, 32> ba{};
            for (int lane = 0; lane < 32; ++lane)
                ba[size_t(lane)] = fa2::swz(D, 16 * j + fa2::bt_row(lane), 2 * kk + fa2::bt_chunk(lane));
            const warp_regs bb = ldmatrix_x4(b_tile, ba, false);
            mma(s[size_t(2 * j)], a, pick_b(bb, 0));
            mma(s[size_t(2 * j + 1)], a, pick_b(bb, 2));
        }
    }
    return s;
}

// pack_a of attention_fa2.cu: k-block j's A fragment = C(2j)[0,1], C(2j)[2,3], C(2j+1)[0,1], C(2j+1)[2,3].
std::array<afrag, 4> pack_a(const std::array<cfrag, 8>& s) {
    std::array<afrag, 4> p{};
    for (int j = 0; j < 4; ++j)
        for (int lane = 0; lane < 32; ++lane) {
            const auto& c0 = s[size_t(2 * j)][size_t(lane)];
            const auto& c1 = s[size_t(2 * j + 1)][size_t(lane)];
            p[size_t(j)][size_t(lane)] = {{{c0[0], c0[1]}, {c0[2], c0[3]}, {c1[0], c1[1]}, {c1[2], c1[3]}}};
        }
    return p;
}

// warp_pv of attention_fa2.cu: acc (D/8 n8 tiles) += P (four k-blocks) · x (64 rows of k, [64][D]).
void warp_pv(int D, std::vector<cfrag>& acc, const std::array<afrag, 4>& p, const std::vector<float>& x) {
    for (int j = 0; j < 4; ++j)
        for (int c = 0; c < D / 16; ++c) {
            std::array<int, 32> addr{};
            for (int lane = 0; lane < 32; ++lane)
                addr[size_t(lane)] = fa2::swz(D, 16 * j + fa2::a_row(lane), 2 * c + fa2::a_chunk(lane));
            const warp_regs bb = ldmatrix_x4(x, addr, true);
            mma(acc[size_t(2 * c)], p[size_t(j)], pick_b(bb, 0));
            mma(acc[size_t(2 * c + 1)], p[size_t(j)], pick_b(bb, 2));
        }
}

// A [64][D] matrix of small integers (exact in fp32 sums) and its swizzled shared-memory image.
void random_tile(int D, std::mt19937& rng, std::vector<float>& plain, std::vector<float>& smem) {
    std::uniform_int_distribution<int> u(-4, 4);
    plain.assign(size_t(64 * D), 0.0f);
    smem.assign(size_t(64 * D), 0.0f);
    for (int r = 0; r < 64; ++r)
        for (int c = 0; c < D; ++c) {
            const float v = float(u(rng));
            plain[size_t(r * D + c)] = v;
            smem[size_t(fa2::swz(D, r, c / 8) + c % 8)] = v;
        }
}

} // namespace

class TestFa2Layout : public QObject {
    Q_OBJECT

private slots:
    void swizzleIsAPermutationAndConflictFree() {
        for (int D : {64, 128}) {
            std::set<int> seen;
            for (int r = 0; r < 64; ++r)
                for (int c = 0; c < D / 8; ++c) {
                    const int off = fa2::swz(D, r, c);
                    QVERIFY(off % 8 == 0 && off >= r * D && off < (r + 1) * D);
                    seen.insert(off);
                }
            QCOMPARE(int(seen.size()), 64 * D / 8);
            // each ldmatrix phase (8 lanes, 8 rows at one logical chunk) touches 8 distinct 16-byte bank groups
            for (int r0 = 0; r0 < 64; r0 += 8)
                for (int c = 0; c < D / 8; ++c) {
                    std::set<int> banks;
                    for (int i = 0; i < 8; ++i) banks.insert((fa2::swz(D, r0 + i, c) * 2 / 16) % 8);
                    QCOMPARE(int(banks.size()), 8);
                }
        }
    }

    void scoresAndOutputsMatchPlainProducts() {
        std::mt19937 rng(7);
        for (int D : {64, 128}) {
            std::vector<float> q, qs, k, ks, v, vs;
            random_tile(D, rng, q, qs);
            random_tile(D, rng, k, ks);
            random_tile(D, rng, v, vs);
            for (int warp = 0; warp < 4; ++warp) {
                const std::array<cfrag, 8> s = warp_abt(D, qs, 16 * warp, ks);
                // S = Q Kᵀ at C positions: lane 4g + t, tile nt, element e -> (16 warp + g + 8 (e / 2), 8 nt + 2t + e % 2)
                for (int nt = 0; nt < 8; ++nt)
                    for (int lane = 0; lane < 32; ++lane)
                        for (int e = 0; e < 4; ++e) {
                            const int r = 16 * warp + lane / 4 + (e >= 2 ? 8 : 0), n = 8 * nt + 2 * (lane % 4) + e % 2;
                            float want = 0;
                            for (int d = 0; d < D; ++d) want += q[size_t(r * D + d)] * k[size_t(n * D + d)];
                            QCOMPARE(s[size_t(nt)][size_t(lane)][size_t(e)], want);
                        }
                // O = S V through pack_a (C -> A) and the .trans ldmatrix of V
                std::vector<cfrag> o(size_t(D / 8));
                warp_pv(D, o, pack_a(s), vs);
                for (int dt = 0; dt < D / 8; ++dt)
                    for (int lane = 0; lane < 32; ++lane)
                        for (int e = 0; e < 4; ++e) {
                            const int r = 16 * warp + lane / 4 + (e >= 2 ? 8 : 0), c = 8 * dt + 2 * (lane % 4) + e % 2;
                            float want = 0;
                            for (int n = 0; n < 64; ++n) {
                                float srn = 0;
                                for (int d = 0; d < D; ++d) srn += q[size_t(r * D + d)] * k[size_t(n * D + d)];
                                want += srn * v[size_t(n * D + c)];
                            }
                            QCOMPARE(o[size_t(dt)][size_t(lane)][size_t(e)], want);
                        }
            }
        }
    }
};

QTEST_GUILESS_MAIN(TestFa2Layout)
#include "tst_fa2_layout.moc"
