#include "astroflow/atomic_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace astroflow {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("astroflow-atomic-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  [[nodiscard]] std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    return out;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  fs::path dir_;
};

TEST_F(AtomicFileTest, WritesWholeFileAndLeavesNoTemporary) {
  const fs::path target = dir_ / "out.csv";
  write_file_atomically(target.string(), "a,b\n1,2\n");
  EXPECT_EQ(slurp(target), "a,b\n1,2\n");
  EXPECT_EQ(entries(), std::vector<std::string>{"out.csv"});
}

TEST_F(AtomicFileTest, ThrowingWriterLeavesNoFileAndNoTemporary) {
  const fs::path target = dir_ / "cat.fits";
  std::string seen_tmp;
  EXPECT_THROW(write_atomically(target.string(),
                                [&](const std::string& tmp) {
                                  seen_tmp = tmp;
                                  std::ofstream(tmp) << "half";
                                  throw std::runtime_error("disk on fire");
                                }),
               std::runtime_error);
  EXPECT_FALSE(seen_tmp.empty());
  EXPECT_TRUE(entries().empty()) << entries().front();
}

TEST_F(AtomicFileTest, DeferredWriteReplacesWholeAndSyncFilesystemNamesAMissingFolder) {
  const fs::path target = dir_ / "a.cat.fits";
  write_file_atomically(target.string(), "first", Durability::kDeferred);
  write_file_atomically(target.string(), std::string(100000, 'x'), Durability::kDeferred);
  EXPECT_EQ(slurp(target), std::string(100000, 'x'));
  EXPECT_EQ(entries(), std::vector<std::string>{"a.cat.fits"});
  sync_filesystem(dir_.string());  // makes the group durable; nothing to observe but no error
  const std::string missing = (dir_ / "nope").string();
  try {
    sync_filesystem(missing);
    ADD_FAILURE() << "sync_filesystem on a missing folder did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

TEST_F(AtomicFileTest, FailedRewriteKeepsTheOldFile) {
  const fs::path target = dir_ / "summary.json";
  write_file_atomically(target.string(), "old");
  EXPECT_THROW(write_atomically(target.string(),
                                [](const std::string& tmp) {
                                  std::ofstream(tmp) << "new but broken";
                                  throw std::runtime_error("fail");
                                }),
               std::runtime_error);
  EXPECT_EQ(slurp(target), "old");
  EXPECT_EQ(entries().size(), 1u);
}

TEST_F(AtomicFileTest, WriterThatCreatesNothingIsAnError) {
  const fs::path target = dir_ / "x.fits";
  EXPECT_THROW(write_atomically(target.string(), [](const std::string&) {}), std::runtime_error);
  EXPECT_TRUE(entries().empty());
}

TEST_F(AtomicFileTest, CreatesParentFolders) {
  const fs::path target = dir_ / "a" / "b" / "c.txt";
  write_file_atomically(target.string(), "x");
  EXPECT_EQ(slurp(target), "x");
}

TEST_F(AtomicFileTest, TemporaryPathIsHiddenSiblingAndUnique) {
  const std::string final_path = (dir_ / "img.fits").string();
  const std::string a = temporary_path_for(final_path);
  const std::string b = temporary_path_for(final_path);
  EXPECT_NE(a, b);
  EXPECT_EQ(fs::path(a).parent_path(), dir_);
  EXPECT_EQ(fs::path(a).filename().string().rfind(".img.fits.tmp.", 0), 0u) << a;
  EXPECT_EQ(temporary_path_for("plain.txt").rfind(".plain.txt.tmp.", 0), 0u);
}

TEST_F(AtomicFileTest, Sha256MatchesPublishedTestVectors) {
  // FIPS 180-2, appendix B.1 ("abc") and the digest of the empty message.
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const fs::path p = dir_ / "abc.bin";
  write_file_atomically(p.string(), "abc");
  EXPECT_EQ(sha256_file(p.string()), sha256_hex("abc"));
  // Larger than the 64 KiB read buffer, to cross a chunk boundary.
  std::string big(200000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 % 251);
  write_file_atomically(p.string(), big);
  EXPECT_EQ(sha256_file(p.string()), sha256_hex(big));
  EXPECT_THROW((void)sha256_file((dir_ / "missing").string()), std::runtime_error);
}

}  // namespace
}  // namespace astroflow
