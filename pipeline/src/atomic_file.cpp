#include "astroflow/atomic_file.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace astroflow {
namespace {

namespace fs = std::filesystem;

std::runtime_error errno_error(const std::string& what, const std::string& path) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

/// Owns a POSIX file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }
  /// Closes now, reporting close(2)'s error (some filesystems report write errors only there).
  [[nodiscard]] int close_now() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

void fsync_path(const std::string& path, int flags) {
  Fd fd(::open(path.c_str(), flags | O_CLOEXEC));
  if (fd.get() < 0) throw errno_error("cannot open for fsync", path);
  if (::fsync(fd.get()) != 0) throw errno_error("fsync failed", path);
}

struct EvpCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using EvpCtx = std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter>;

EvpCtx new_sha256(const std::string& what) {
  EvpCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error(what + ": cannot initialise SHA-256 (OpenSSL)");
  }
  return ctx;
}

std::string finish_hex(EVP_MD_CTX* ctx, const std::string& what) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, digest.data(), &len) != 1) {
    throw std::runtime_error(what + ": SHA-256 failed (OpenSSL)");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace

std::string temporary_path_for(const std::string& final_path) {
  // The only process-wide state here: a counter that makes concurrent temp names unique within
  // this process (the pid makes them unique across processes sharing a folder).
  static std::atomic<unsigned long long> counter{0};
  const fs::path p(final_path);
  std::string name = ".";
  name += p.filename().string();
  name += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  return p.has_parent_path() ? (p.parent_path() / name).string() : name;
}

void write_atomically(const std::string& final_path,
                      const std::function<void(const std::string& tmp_path)>& write,
                      Durability durability) {
  const bool now = durability == Durability::kNow;
  const fs::path final_fs(final_path);
  if (final_fs.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(final_fs.parent_path(), ec);
    if (ec) {
      throw std::runtime_error(final_path + ": cannot create folder " +
                               final_fs.parent_path().string() + ": " + ec.message());
    }
  }
  const std::string tmp = temporary_path_for(final_path);
  try {
    write(tmp);
    if (!fs::exists(tmp)) {
      throw std::runtime_error(final_path + ": the writer did not create " + tmp);
    }
    if (now) fsync_path(tmp, O_RDONLY);
    if (std::rename(tmp.c_str(), final_path.c_str()) != 0) {
      throw errno_error("cannot rename " + tmp + " onto it", final_path);
    }
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  if (!now) return;
  // The rename is durable only once the folder entry is on disk. A failure here leaves a
  // complete file, so it is not worth failing the write over.
  const std::string dir =
      final_fs.has_parent_path() ? final_fs.parent_path().string() : std::string(".");
  try {
    fsync_path(dir, O_RDONLY | O_DIRECTORY);
  } catch (const std::runtime_error&) {
  }
}

void write_file_atomically(const std::string& final_path, std::string_view contents,
                           Durability durability) {
  write_atomically(
      final_path,
      [contents](const std::string& tmp) {
        Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (fd.get() < 0) throw errno_error("cannot create", tmp);
        std::size_t done = 0;
        while (done < contents.size()) {
          const ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) throw errno_error("write failed", tmp);
          done += static_cast<std::size_t>(n);
        }
        if (fd.close_now() != 0) throw errno_error("write failed", tmp);
      },
      durability);
}

void sync_filesystem(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) throw errno_error("cannot open to sync its filesystem", dir);
  if (::syncfs(fd.get()) != 0) throw errno_error("syncfs failed", dir);
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw errno_error("cannot open for sha256", path);
  EvpCtx ctx = new_sha256(path);
  // Not value-initialised: zeroing 64 KiB cost more than hashing a small catalog.
  std::array<char, 1 << 16> buf;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  while (in) {
    in.read(buf.data(), buf.size());
    const std::streamsize n = in.gcount();
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(n)) != 1) {
      throw std::runtime_error(path + ": SHA-256 update failed (OpenSSL)");
    }
  }
  if (in.bad()) throw errno_error("read failed", path);
  return finish_hex(ctx.get(), path);
}

std::string sha256_hex(std::string_view bytes) {
  EvpCtx ctx = new_sha256("sha256_hex");
  if (EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("sha256_hex: SHA-256 update failed (OpenSSL)");
  }
  return finish_hex(ctx.get(), "sha256_hex");
}

}  // namespace astroflow
