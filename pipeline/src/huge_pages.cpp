#include "astroflow/huge_pages.hpp"

#include <opencv2/core/core_c.h>  // CV_AUTOSTEP, as OpenCV's own allocator reads it
#include <sys/mman.h>

#include <cstdint>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/core/mat.hpp>

namespace astroflow {

namespace {

// OpenCV's StdMatAllocator, except for where large buffers come from.
class HugePageMatAllocator final : public cv::MatAllocator {
 public:
  cv::UMatData* allocate(int dims, const int* sizes, int type, void* data0, std::size_t* step,
                         cv::AccessFlag /*flags*/, cv::UMatUsageFlags /*usage*/) const override {
    std::size_t total = CV_ELEM_SIZE(type);
    for (int i = dims - 1; i >= 0; --i) {
      if (step != nullptr) {
        if (data0 != nullptr && step[i] != CV_AUTOSTEP) {
          CV_Assert(total <= step[i]);
          total = step[i];
        } else {
          step[i] = total;
        }
      }
      total *= static_cast<std::size_t>(sizes[i]);
    }
    auto* data = static_cast<uchar*>(data0);
    if (data == nullptr) data = total >= kHugePageMinBytes ? huge_alloc(total) : small_alloc(total);
    auto* u = new cv::UMatData(this);
    u->data = u->origdata = data;
    u->size = total;
    if (data0 != nullptr) u->flags |= cv::UMatData::USER_ALLOCATED;
    return u;
  }

  bool allocate(cv::UMatData* u, cv::AccessFlag /*flags*/,
                cv::UMatUsageFlags /*usage*/) const override {
    return u != nullptr;
  }

  void deallocate(cv::UMatData* u) const override {
    if (u == nullptr) return;
    CV_Assert(u->urefcount == 0);
    CV_Assert(u->refcount == 0);
    if ((u->flags & cv::UMatData::USER_ALLOCATED) == 0) {
      // The size decides which allocator the buffer came from.
      if (u->size >= kHugePageMinBytes) {
        huge_free(u->origdata, u->size);
      } else {
        cv::fastFree(u->origdata);
      }
      u->origdata = nullptr;
    }
    delete u;
  }

 private:
  static uchar* small_alloc(std::size_t n) { return static_cast<uchar*>(cv::fastMalloc(n)); }

  static std::size_t huge_length(std::size_t n) {
    return (n + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  }

  // Its own mapping, 2 MiB-aligned (the head and tail of a larger mapping cut off): freed
  // buffers go back to the kernel at once, where malloc would keep some in its heap, which on
  // huge pages inflated the peak RSS of an 8192^2 survey run.
  static uchar* huge_alloc(std::size_t n) {
    const std::size_t len = huge_length(n);
    const std::size_t span = len + kHugePageBytes;
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      CV_Error(cv::Error::StsNoMem, "astroflow: out of memory allocating an image buffer");
    }
    const auto base = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (base + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    const std::size_t head = aligned - base;
    if (head > 0) munmap(raw, head);
    const std::size_t tail = span - head - len;
    if (tail > 0) munmap(reinterpret_cast<void*>(aligned + len), tail);
    // A hint: where the kernel has no huge page to give, the buffer stays on small pages.
    (void)madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
    return reinterpret_cast<uchar*>(aligned);
  }

  static void huge_free(void* p, std::size_t n) { munmap(p, huge_length(n)); }
};

}  // namespace

bool use_huge_page_allocator() {
#ifdef MADV_HUGEPAGE
  static std::once_flag once;
  std::call_once(once, [] {
    // Never destroyed: cv::Mat objects of static storage may outlive any owner.
    static auto* allocator = new HugePageMatAllocator();
    cv::Mat::setDefaultAllocator(allocator);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace astroflow
