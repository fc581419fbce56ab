// Transparent huge pages for large image buffers.
//
// A 4096^2 float plane is 64 MiB: on 4 KiB pages the kernel faults it in 16,384 times, and a
// run allocates and frees such planes (science, background, rms, the network's input, labels)
// for every frame. On the 2-core development VM, where THP is in `madvise` mode (Debian's
// default), background -> detect on a 4096^2 field took 175,000 minor page faults and 1.2-1.4 s
// of system time in a 3.6 s run; with this allocator 29,000 faults and 2.1 s (docs/batch.md,
// "Huge pages for image planes").
//
// use_huge_page_allocator() makes OpenCV's default cv::Mat allocator place buffers of at least
// kHugePageMinBytes on 2 MiB-aligned memory marked MADV_HUGEPAGE; smaller ones keep OpenCV's own
// allocation (huge ones are mapped and unmapped directly). It changes no result, only where the
// bytes live. The astroflow CLI installs it at start-up unless ASTROFLOW_HUGE_PAGES=0; a program
// embedding the library may call it itself.
#pragma once

#include <cstddef>

namespace astroflow {

inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;
inline constexpr std::size_t kHugePageMinBytes = std::size_t{4} << 20;

/// Installs the allocator as OpenCV's default (once; later calls do nothing). Returns false when
/// the platform has no madvise(MADV_HUGEPAGE), in which case nothing changes.
bool use_huge_page_allocator();

}  // namespace astroflow
