// Layer unpacking: overlay conversion, metadata, and hostile tars that try to
// write outside the layer directory.
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "image/digest.hpp"
#include "image/unpack.hpp"

// The crafted entries below list only the fields they need.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace crisd;
using namespace crisd::image;
namespace fs = std::filesystem;

namespace {

struct Entry {
    std::string name;
    mode_t type = AE_IFREG;
    mode_t perm = 0644;
    std::string data;      // file content or symlink target
    std::string hardlink;  // for hard links
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<std::pair<std::string, std::string>> xattrs;
    dev_t rdev = 0;
};

// A tar (pax) of `entries`, optionally gzip- or zstd-compressed, in a file.
std::string make_tar(const std::string& path, const std::vector<Entry>& entries, const std::string& filter = "") {
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (filter == "gzip") archive_write_add_filter_gzip(a);
    if (filter == "zstd") archive_write_add_filter_zstd(a);
    archive_write_open_filename(a, path.c_str());
    for (const auto& e : entries) {
        archive_entry* en = archive_entry_new();
        archive_entry_set_pathname(en, e.name.c_str());
        archive_entry_set_uid(en, e.uid);
        archive_entry_set_gid(en, e.gid);
        archive_entry_set_mtime(en, 1704067200, 0);
        if (!e.hardlink.empty()) {
            archive_entry_set_hardlink(en, e.hardlink.c_str());
            archive_entry_set_filetype(en, AE_IFREG);
            archive_entry_set_size(en, 0);
        } else {
            archive_entry_set_filetype(en, e.type);
            archive_entry_set_perm(en, e.perm);
            if (e.type == AE_IFLNK) archive_entry_set_symlink(en, e.data.c_str());
            if (e.type == AE_IFREG) archive_entry_set_size(en, static_cast<la_int64_t>(e.data.size()));
            if (e.type == AE_IFCHR || e.type == AE_IFBLK) archive_entry_set_rdev(en, e.rdev);
        }
        for (const auto& [k, v] : e.xattrs) archive_entry_xattr_add_entry(en, k.c_str(), v.data(), v.size());
        archive_write_header(a, en);
        if (e.type == AE_IFREG && e.hardlink.empty() && !e.data.empty()) archive_write_data(a, e.data.data(), e.data.size());
        archive_entry_free(en);
    }
    archive_write_close(a);
    archive_write_free(a);
    return path;
}

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class Unpack : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/var/tmp/crisd-unpack-test-XXXXXX";
        top_ = ::mkdtemp(tmpl);
        layer_ = top_ + "/sub/layer";
        outside_ = top_ + "/outside";
        fs::create_directories(layer_);
        fs::create_directories(outside_);
        std::ofstream(outside_ + "/secret") << "secret";
    }
    void TearDown() override { fs::remove_all(top_); }

    UnpackStats unpack(const std::vector<Entry>& entries, const std::string& filter = "") {
        const std::string tar = make_tar(top_ + "/layer.tar", entries, filter);
        UniqueFd in(::open(tar.c_str(), O_RDONLY | O_CLOEXEC));
        UniqueFd dir(::open(layer_.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
        return unpack_layer(in.get(), dir.get());
    }
    // Nothing but `layer`, layer.tar and outside/secret (unchanged) in top_.
    void expect_nothing_outside() {
        std::vector<std::string> found;
        for (const auto& e : fs::recursive_directory_iterator(top_)) {
            const std::string p = e.path().string();
            if (p.starts_with(layer_ + "/") || p == layer_) continue;
            found.push_back(p.substr(top_.size()));
        }
        std::sort(found.begin(), found.end());
        EXPECT_EQ(found, (std::vector<std::string>{"/layer.tar", "/outside", "/outside/secret", "/sub"}));
        EXPECT_EQ(slurp(outside_ + "/secret"), "secret");
        struct stat st {};
        ASSERT_EQ(::stat((outside_ + "/secret").c_str(), &st), 0);
        EXPECT_EQ(st.st_nlink, 1u) << "a hard link to a file outside the layer was made";
    }

    std::string top_, layer_, outside_;
};

}  // namespace

TEST(UnpackPath, CleansNames) {
    EXPECT_EQ(clean_entry_path("./a/../b//c/"), (std::vector<std::string>{"b", "c"}));
    EXPECT_EQ(clean_entry_path("../../../etc/passwd"), (std::vector<std::string>{"etc", "passwd"}));
    EXPECT_EQ(clean_entry_path("/etc/passwd"), (std::vector<std::string>{"etc", "passwd"}));
    EXPECT_TRUE(clean_entry_path("./").empty());
}

TEST_F(Unpack, KeepsMetadataAndConvertsWhiteouts) {
    const auto stats = unpack({
        {"dir/", AE_IFDIR, 0750, "", "", 1000, 1000},
        {"dir/file.txt", AE_IFREG, 0640, "owned", "", 1000, 1000},
        {"dir/hard.txt", AE_IFREG, 0644, "target"},
        {"dir/target.txt", AE_IFREG, 0, "", "dir/hard.txt"},
        {"dir/rel", AE_IFLNK, 0777, "target.txt"},
        {"dir/abs", AE_IFLNK, 0777, "/etc/passwd"},
        {"dir/.wh.gone.txt"},
        {"opq/", AE_IFDIR, 0755},
        {"opq/.wh..wh..opq"},
        {"x/xattr.txt", AE_IFREG, 0644, "xattr", "", 0, 0, {{"user.crisd", "test"}, {"trusted.overlay.opaque", "y"}}},
        {"dev/null", AE_IFCHR, 0666, "", "", 0, 0, {}, makedev(1, 3)},
        {"fifo", AE_IFIFO, 0600},
        {"setuid", AE_IFREG, 04755, "s"},
        {".wh..wh.plnk"},
    });
    EXPECT_GE(stats.entries, 13);
    struct stat st {};
    ASSERT_EQ(::stat((layer_ + "/dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    EXPECT_EQ(st.st_uid, 1000u);
    ASSERT_EQ(::stat((layer_ + "/dir/file.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(st.st_gid, 1000u);
    EXPECT_EQ(st.st_mtime, 1704067200);
    EXPECT_EQ(slurp(layer_ + "/dir/file.txt"), "owned");
    struct stat a {}, b {};
    ASSERT_EQ(::stat((layer_ + "/dir/hard.txt").c_str(), &a), 0);
    ASSERT_EQ(::stat((layer_ + "/dir/target.txt").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(a.st_nlink, 2u);
    EXPECT_EQ(fs::read_symlink(layer_ + "/dir/rel"), "target.txt");
    EXPECT_EQ(fs::read_symlink(layer_ + "/dir/abs"), "/etc/passwd");
    // Whiteout: a 0/0 character device, no .wh. file.
    ASSERT_EQ(::lstat((layer_ + "/dir/gone.txt").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(0, 0));
    EXPECT_FALSE(fs::exists(layer_ + "/dir/.wh.gone.txt"));
    EXPECT_FALSE(fs::exists(layer_ + "/.wh..wh.plnk"));
    // Opaque directory: the xattr, no marker file.
    char buf[8] = {0};
    EXPECT_EQ(::getxattr((layer_ + "/opq").c_str(), "trusted.overlay.opaque", buf, sizeof buf), 1);
    EXPECT_EQ(buf[0], 'y');
    EXPECT_FALSE(fs::exists(layer_ + "/opq/.wh..wh..opq"));
    // User xattrs are kept (where the file system has them); overlay ones are not taken from tars.
    const ssize_t n = ::getxattr((layer_ + "/x/xattr.txt").c_str(), "user.crisd", buf, sizeof buf);
    if (n >= 0) {
        EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "test");
    }
    EXPECT_LT(::getxattr((layer_ + "/x/xattr.txt").c_str(), "trusted.overlay.opaque", buf, sizeof buf), 0);
    ASSERT_EQ(::lstat((layer_ + "/dev/null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(1, 3));
    ASSERT_EQ(::lstat((layer_ + "/fifo").c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    ASSERT_EQ(::stat((layer_ + "/setuid").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 04755u);
    expect_nothing_outside();
}

TEST_F(Unpack, GzipAndZstd) {
    unpack({{"a.txt", AE_IFREG, 0644, "gz"}}, "gzip");
    EXPECT_EQ(slurp(layer_ + "/a.txt"), "gz");
    unpack({{"b.txt", AE_IFREG, 0644, "zst"}}, "zstd");
    EXPECT_EQ(slurp(layer_ + "/b.txt"), "zst");
}

TEST_F(Unpack, UncompressedDigestIsTheDiffId) {
    const std::vector<Entry> entries = {{"a.txt", AE_IFREG, 0644, std::string(5000, 'a')}};
    const std::string plain = make_tar(top_ + "/plain.tar", entries);
    const std::string want = sha256_digest(slurp(plain));
    for (const char* filter : {"", "gzip", "zstd"}) {
        const std::string tar = make_tar(top_ + "/layer.tar", entries, filter);
        UniqueFd in(::open(tar.c_str(), O_RDONLY | O_CLOEXEC));
        EXPECT_EQ(uncompressed_digest(in.get()), want) << filter;
    }
    fs::remove(plain);
}

TEST_F(Unpack, LaterEntriesReplaceEarlierOnes) {
    unpack({{"f", AE_IFREG, 0644, "v1"}, {"f", AE_IFREG, 0644, "v2"}, {"d/", AE_IFDIR, 0755}, {"d/x", AE_IFREG, 0644, "x"},
            {"d", AE_IFREG, 0644, "now a file"}});
    EXPECT_EQ(slurp(layer_ + "/f"), "v2");
    EXPECT_EQ(slurp(layer_ + "/d"), "now a file");
}

TEST_F(Unpack, DotDotAndAbsolutePathsStayInside) {
    unpack({{"../../../escape-dotdot.txt", AE_IFREG, 0644, "x"},
            {"/escape-abs.txt", AE_IFREG, 0644, "x"},
            {"a/../../../../outside/secret", AE_IFREG, 0644, "overwritten"}});
    EXPECT_TRUE(fs::exists(layer_ + "/escape-dotdot.txt"));
    EXPECT_TRUE(fs::exists(layer_ + "/escape-abs.txt"));
    EXPECT_EQ(slurp(layer_ + "/outside/secret"), "overwritten");
    expect_nothing_outside();
}

TEST_F(Unpack, SymlinkParentsCannotLeadOutside) {
    try {
        unpack({{"up", AE_IFLNK, 0777, "../../.."},
                {"up/outside/evil.txt", AE_IFREG, 0644, "x"},
                {"abs", AE_IFLNK, 0777, outside_},
                {"abs/evil2.txt", AE_IFREG, 0644, "x"},
                {"root", AE_IFLNK, 0777, "/"},
                {"root/evil3.txt", AE_IFREG, 0644, "x"}});
    } catch (const Error&) {
        // Refusing the layer is as good as keeping the writes inside.
    }
    EXPECT_FALSE(fs::exists(outside_ + "/evil.txt"));
    EXPECT_FALSE(fs::exists(outside_ + "/evil2.txt"));
    EXPECT_FALSE(fs::exists("/evil3.txt"));
    expect_nothing_outside();
}

TEST_F(Unpack, FilesDoNotWriteThroughSymlinks) {
    unpack({{"link", AE_IFLNK, 0777, outside_ + "/secret"}, {"link", AE_IFREG, 0644, "replaced"}});
    EXPECT_EQ(slurp(layer_ + "/link"), "replaced");
    EXPECT_FALSE(fs::is_symlink(layer_ + "/link"));
    unpack({{"rel", AE_IFLNK, 0777, "../../outside/secret"}, {"rel", AE_IFREG, 0644, "replaced"}});
    expect_nothing_outside();
}

TEST_F(Unpack, HardLinksCannotReachOutside) {
    for (const std::vector<Entry>& tar : {
             std::vector<Entry>{{"h1", AE_IFREG, 0, "", "../../outside/secret"}},
             std::vector<Entry>{{"h2", AE_IFREG, 0, "", outside_ + "/secret"}},
             std::vector<Entry>{{"esc", AE_IFLNK, 0777, outside_}, {"h3", AE_IFREG, 0, "", "esc/secret"}},
             std::vector<Entry>{{"up", AE_IFLNK, 0777, "../.."}, {"h4", AE_IFREG, 0, "", "up/outside/secret"}},
         }) {
        try {
            unpack(tar);
        } catch (const Error&) {
        }
    }
    expect_nothing_outside();
    // A hard link to a symlink links the symlink, never what it points to.
    unpack({{"s", AE_IFLNK, 0777, outside_ + "/secret"}, {"hs", AE_IFREG, 0, "", "s"}});
    EXPECT_TRUE(fs::is_symlink(layer_ + "/hs"));
    expect_nothing_outside();
}

TEST_F(Unpack, WhiteoutsCannotRemoveOutside) {
    unpack({{"up", AE_IFLNK, 0777, "../.."}, {"up/outside/.wh.secret"}, {"../../outside/.wh.secret"}});
    expect_nothing_outside();
}

TEST_F(Unpack, TruncatedOrGarbageLayersFail) {
    const std::string tar = make_tar(top_ + "/layer.tar", {{"big", AE_IFREG, 0644, std::string(100000, 'x')}}, "gzip");
    fs::resize_file(tar, fs::file_size(tar) / 2);
    UniqueFd in(::open(tar.c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dir(::open(layer_.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    EXPECT_THROW(unpack_layer(in.get(), dir.get()), Error);
    std::ofstream(top_ + "/garbage") << "this is not a tar archive at all, not even close..........";
    UniqueFd g(::open((top_ + "/garbage").c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_THROW(unpack_layer(g.get(), dir.get()), Error);
}
