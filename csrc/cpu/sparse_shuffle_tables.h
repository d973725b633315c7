// Byte-shuffle controls of the 2:4 kernels that move kept values with vpshufb / vpermd
// (sparse_avx2.cpp, and the 16-bit kernels of sparse_avx512.cpp). Included after
// sparse_kernels_impl.h; internal linkage, like everything there.
#pragma once

#include <cstdint>

namespace greenai::cpu {
namespace {

// Shuffle controls, generated at compile time from the nibble rules of sparse_kernels_impl.h.
// Rows are 128-bit lanes: the AVX2 kernels load two per vector, the AVX-512 ones four.
struct ShuffleTables {
    // vpermd indices that move the 4 kept float32 of an 8-bit kept pattern (2 groups) to
    // lanes 0-3, in index order.
    std::uint32_t compress32[256][4]{};
    // vpshufb control that moves the 4 kept 16-bit values of an 8-bit kept pattern (2 groups
    // in one 128-bit lane) to its low 8 bytes; the high 8 bytes are zeroed.
    std::uint8_t compress16[256][16]{};
    // vpshufb control that writes the 8 float32 of a meta byte (2 groups) from its 4 values
    // broadcast to both 128-bit lanes (group 0 in lane 0 reads bytes 0-7, group 1 in lane 1
    // bytes 8-15); 0x80 writes zero.
    std::uint8_t decompress32[256][32]{};
    // The same for 16-bit values within one 128-bit lane: the 8 outputs of a meta byte from
    // the 4 values in bytes 0-7 (add 8 to read bytes 8-15 instead).
    std::uint8_t decompress16[256][16]{};

    constexpr ShuffleTables() {
        for (unsigned b = 0; b < 256; ++b) {
            unsigned n32 = 0, n16 = 0;
            for (unsigned e = 0; e < 8; ++e) {
                if ((b >> e) & 1u) {
                    if (n32 < 4) {
                        compress32[b][n32++] = e;
                    }
                    if (n16 < 4) {
                        compress16[b][2 * n16] = static_cast<std::uint8_t>(2 * e);
                        compress16[b][2 * n16 + 1] = static_cast<std::uint8_t>(2 * e + 1);
                        ++n16;
                    }
                }
            }
            for (unsigned j = 2 * n16; j < 16; ++j) {
                compress16[b][j] = 0x80;
            }
            for (unsigned g = 0; g < 2; ++g) {
                const unsigned nib = (b >> (4 * g)) & 15u, i0 = nib & 3u, i1 = nib >> 2;
                for (unsigned p = 0; p < 4; ++p) {
                    // decompress_group writes v0 at i0, then v1 at i1: v1 wins when i0 == i1.
                    const int value = p == i1 ? 1 : (p == i0 ? 0 : -1);
                    for (unsigned byte = 0; byte < 4; ++byte) {
                        decompress32[b][16 * g + 4 * p + byte] =
                            value < 0 ? 0x80 : static_cast<std::uint8_t>(8 * g + 4 * value + byte);
                    }
                    for (unsigned byte = 0; byte < 2; ++byte) {
                        decompress16[b][8 * g + 2 * p + byte] =
                            value < 0 ? 0x80 : static_cast<std::uint8_t>(4 * g + 2 * value + byte);
                    }
                }
            }
        }
    }
};
constexpr ShuffleTables kShuffles{};

}  // namespace
}  // namespace greenai::cpu
