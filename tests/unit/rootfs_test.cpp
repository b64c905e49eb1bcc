// Container root filesystems over a store made by hand: overlay mounts (in a
// private mount namespace, so nothing reaches the host), many layers, the
// image marked in use, restart, removal.
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "image/digest.hpp"
#include "image/image.hpp"
#include "image/rootfs.hpp"
#include "image/unpack.hpp"
#include "error_code.hpp"

using namespace crisd;
using namespace crisd::image;
namespace fs = std::filesystem;

using crisd::test::code_of;

namespace {

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A layer with the given files ("name" -> content; content "WHITEOUT" makes a whiteout).
std::string add_layer(const std::string& store, int n, const std::map<std::string, std::string>& files) {
    const std::string tar = store + "/tmp/layer.tar";
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, tar.c_str());
    for (const auto& [name, data] : files) {
        archive_entry* e = archive_entry_new();
        const bool wh = data == "WHITEOUT";
        const std::string path = wh ? ".wh." + name : name;
        archive_entry_set_pathname(e, path.c_str());
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, wh ? 0 : static_cast<la_int64_t>(data.size()));
        archive_write_header(a, e);
        if (!wh) archive_write_data(a, data.data(), data.size());
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    const std::string digest = sha256_digest(slurp(tar) + std::to_string(n));
    const std::string dir = store + "/layers/" + digest.substr(7);
    fs::create_directories(dir + "/diff");
    UniqueFd in(::open(tar.c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd d(::open((dir + "/diff").c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    unpack_layer(in.get(), d.get());
    char link[11];
    std::snprintf(link, sizeof link, "L%09d", n);
    std::ofstream(dir + "/link") << link;
    fs::create_directory_symlink("../layers/" + digest.substr(7) + "/diff", store + "/l/" + link);
    fs::remove(tar);
    return digest;
}

// An image record over `layers` (lowest first); returns its id.
std::string add_image(const std::string& store, const std::vector<std::string>& layers, const std::string& tag) {
    const std::string config = R"({"os":"linux","architecture":"amd64","config":{"User":"1000"},"tag":")" + tag + "\"}";
    const std::string id = sha256_digest(config);
    std::ofstream(store + "/blobs/sha256/" + id.substr(7)) << config;
    nlohmann::json ls = nlohmann::json::array();
    for (const auto& l : layers) ls.push_back({{"digest", l}, {"size", 1}, {"mediaType", "application/vnd.oci.image.layer.v1.tar"}});
    const nlohmann::json rec = {{"id", id},          {"manifestDigest", id}, {"configDigest", id},
                                {"repoTags", {tag}}, {"repoDigests", nlohmann::json::array()},
                                {"layers", ls},      {"size", 1},            {"user", "1000"}};
    std::ofstream(store + "/images/" + id.substr(7) + ".json") << rec.dump();
    return id;
}

class RootfsTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (overlay mounts)";
        if (!in_private_ns_) {
            if (::unshare(CLONE_NEWNS) != 0) GTEST_SKIP() << "cannot unshare the mount namespace";
            ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
            in_private_ns_ = true;
        }
        char tmpl[] = "/var/tmp/crisd-rootfs-test-XXXXXX";
        top_ = ::mkdtemp(tmpl);
        store_ = top_ + "/images";
        for (const char* d : {"", "/blobs", "/blobs/sha256", "/layers", "/l", "/images", "/tmp"})
            fs::create_directories(store_ + d);
    }
    void TearDown() override {
        if (top_.empty()) return;
        for (const auto& e : fs::directory_iterator(top_ + "/rootfs", ec_))
            ::umount2((e.path() / "merged").c_str(), MNT_DETACH);
        fs::remove_all(top_, ec_);
    }
    Options options() const {
        Options o;
        o.root = store_;
        o.registries_conf = top_ + "/registries.conf";
        return o;
    }

    static bool in_private_ns_;
    std::string top_, store_;
    std::error_code ec_;
};
bool RootfsTest::in_private_ns_ = false;

}  // namespace

TEST_F(RootfsTest, MountsLayersWithAnUpperAndRefusesImageRemovalWhileUsed) {
    const auto l1 = add_layer(store_, 1, {{"a.txt", "a1"}, {"gone.txt", "x"}});
    const auto l2 = add_layer(store_, 2, {{"a.txt", "a2"}, {"gone.txt", "WHITEOUT"}});
    const std::string id = add_image(store_, {l1, l2}, "example.com/app:v1");
    Images images(options());
    ASSERT_EQ(images.count(), 1u);
    EXPECT_EQ(images.status("example.com/app:v1")->uid.value(), 1000);
    EXPECT_EQ(images.config("example.com/app:v1").user, "1000");
    EXPECT_EQ(code_of([&] { images.config("example.com/none:v1"); }), Code::NotFound);
    Rootfs rootfs(images, top_ + "/rootfs");
    const auto info = rootfs.create("c1", "example.com/app:v1");
    EXPECT_EQ(info.image_id, id);
    EXPECT_FALSE(info.mounted);
    EXPECT_EQ(code_of([&] { rootfs.create("c1", id); }), Code::AlreadyExists);
    EXPECT_EQ(code_of([&] { rootfs.create("c2", "example.com/none:v1"); }), Code::NotFound);
    EXPECT_EQ(code_of([&] { rootfs.create("../evil", id); }), Code::InvalidArgument);

    const std::string merged = rootfs.mount("c1");
    EXPECT_EQ(rootfs.mount("c1"), merged);  // idempotent
    EXPECT_TRUE(rootfs.get("c1")->mounted);
    EXPECT_EQ(slurp(merged + "/a.txt"), "a2");
    EXPECT_FALSE(fs::exists(merged + "/gone.txt"));
    std::ofstream(merged + "/new.txt") << "mine";
    EXPECT_EQ(slurp(info.upper + "/new.txt"), "mine");

    // In use: RemoveImage refuses it, naming the container.
    try {
        images.remove(id);
        FAIL() << "removed an image in use";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::FailedPrecondition);
        EXPECT_NE(std::string(e.what()).find("c1"), std::string::npos) << e.what();
    }

    // Stopped: unmounted, the changes kept; mounted again, they are back.
    rootfs.unmount("c1");
    rootfs.unmount("c1");
    EXPECT_FALSE(rootfs.get("c1")->mounted);
    EXPECT_FALSE(fs::exists(merged + "/a.txt"));
    EXPECT_EQ(slurp(info.upper + "/new.txt"), "mine");
    rootfs.mount("c1");
    EXPECT_EQ(slurp(merged + "/new.txt"), "mine");

    // A restarted crisd (new Images and Rootfs) still knows the image is in use.
    rootfs.unmount("c1");
    {
        Images images2(options());
        Rootfs rootfs2(images2, top_ + "/rootfs");
        EXPECT_EQ(rootfs2.list().size(), 1u);
        EXPECT_EQ(code_of([&] { images2.remove(id); }), Code::FailedPrecondition);
    }

    rootfs.remove("c1");
    rootfs.remove("c1");  // idempotent
    EXPECT_FALSE(fs::exists(top_ + "/rootfs/c1"));
    EXPECT_FALSE(rootfs.get("c1").has_value());
    images.remove(id);
    EXPECT_EQ(images.count(), 0u);
    EXPECT_FALSE(fs::exists(store_ + "/layers/" + l1.substr(7))) << "unreferenced layer kept";
    EXPECT_TRUE(fs::is_empty(store_ + "/l"));
}

TEST_F(RootfsTest, ManyLayers) {
    std::vector<std::string> layers;
    for (int i = 0; i < 200; ++i) layers.push_back(add_layer(store_, i, {{"f" + std::to_string(i), std::to_string(i)}}));
    const std::string id = add_image(store_, layers, "example.com/many:v1");
    Images images(options());
    Rootfs rootfs(images, top_ + "/rootfs-with-a-rather-long-directory-name-to-eat-option-space");
    rootfs.create(std::string(64, 'a'), id);
    const std::string merged = rootfs.mount(std::string(64, 'a'));
    EXPECT_EQ(slurp(merged + "/f0"), "0");
    EXPECT_EQ(slurp(merged + "/f199"), "199");
    rootfs.remove(std::string(64, 'a'));
    fs::remove_all(top_ + "/rootfs-with-a-rather-long-directory-name-to-eat-option-space");
}

TEST_F(RootfsTest, StartupDropsLeftoversAndBrokenRecords) {
    const auto l1 = add_layer(store_, 1, {{"a.txt", "a"}});
    const std::string id = add_image(store_, {l1}, "example.com/ok:v1");
    add_image(store_, {"sha256:" + std::string(64, 'f')}, "example.com/broken:v1");
    const auto orphan = add_layer(store_, 9, {{"o.txt", "o"}});
    fs::create_directories(store_ + "/tmp/layer-half-done/diff");
    std::ofstream(store_ + "/images/x.json.tmp-ABC") << "{";
    Images images(options());
    EXPECT_EQ(images.count(), 1u);
    EXPECT_TRUE(images.status(id).has_value());
    EXPECT_FALSE(images.status("example.com/broken:v1").has_value());
    EXPECT_TRUE(fs::is_empty(store_ + "/tmp"));
    EXPECT_FALSE(fs::exists(store_ + "/layers/" + orphan.substr(7)));
    EXPECT_FALSE(fs::exists(store_ + "/images/x.json.tmp-ABC"));
    EXPECT_TRUE(fs::exists(store_ + "/layers/" + l1.substr(7)));
    const auto usage = images.usage();
    EXPECT_GT(usage.bytes, 0u);
    EXPECT_GT(usage.inodes, 5u);
}

// A container's image_ref is the repo digest of the repository it asked for,
// not whichever the image got first.
TEST_F(RootfsTest, StatusGivesTheRepoDigestOfTheRepositoryAsked) {
    const auto l1 = add_layer(store_, 1, {{"a.txt", "a1"}});
    const std::string id = add_image(store_, {l1}, "a.example/x/app:v1");
    const std::string record = store_ + "/images/" + id.substr(7) + ".json";
    auto j = nlohmann::json::parse(slurp(record));
    const std::string digest = "sha256:" + std::string(64, '5');
    j["repoTags"] = {"a.example/x/app:v1", "b.example/y/app:v1"};
    j["repoDigests"] = {"a.example/x/app@" + digest, "b.example/y/app@" + digest};
    std::ofstream(record) << j.dump();
    Images images(options());
    EXPECT_EQ(images.status("b.example/y/app:v1")->ref_digest, "b.example/y/app@" + digest);
    EXPECT_EQ(images.status("b.example/y/app@" + digest)->ref_digest, "b.example/y/app@" + digest);
    EXPECT_EQ(images.status("a.example/x/app:v1")->ref_digest, "a.example/x/app@" + digest);
    EXPECT_EQ(images.status(id)->ref_digest, "a.example/x/app@" + digest) << "by id: the first";
}

// The one disk usage walker (ImageFsInfo, the writable layer in stats).
TEST_F(RootfsTest, DiskUsageCountsHardLinksOnceAndStaysOnItsFileSystem) {
    const std::string dir = top_ + "/usage";
    fs::create_directories(dir + "/sub/mnt");
    {
        std::ofstream f(dir + "/sub/data");
        f << std::string(256 * 1024, 'x');
    }
    fs::create_hard_link(dir + "/sub/data", dir + "/link");
    struct stat st {};
    ASSERT_EQ(::stat((dir + "/sub/data").c_str(), &st), 0);
    const auto file_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
    ASSERT_GE(file_bytes, 256u * 1024);
    const auto before = disk_usage(dir);
    EXPECT_EQ(before.inodes, 3u) << "sub, sub/mnt, sub/data and its link (once)";
    EXPECT_GE(before.bytes, file_bytes);
    EXPECT_LT(before.bytes, 2 * file_bytes);
    // A file system mounted below is not walked.
    ASSERT_EQ(::mount("tmpfs", (dir + "/sub/mnt").c_str(), "tmpfs", 0, "size=8m"), 0) << std::strerror(errno);
    {
        std::ofstream f(dir + "/sub/mnt/big");
        f << std::string(1024 * 1024, 'y');
    }
    const auto mounted = disk_usage(dir);
    ::umount2((dir + "/sub/mnt").c_str(), MNT_DETACH);
    EXPECT_EQ(mounted.inodes, 2u) << "the mount point shows the tmpfs's root: left out";
    EXPECT_LT(mounted.bytes, before.bytes + 512 * 1024);
    EXPECT_EQ(disk_usage(top_ + "/nonexistent").inodes, 0u);
    EXPECT_TRUE(before.complete);
}

// A container controls its writable layer: a tree deeper than the walk goes
// (made with mkdirat relative to the last level, as `mkdir -p` would) is
// measured down to the bound, with the rest left out and said so; crisd's
// own stack and descriptors do not grow with the tree.
TEST_F(RootfsTest, DiskUsageOfAHostileDeepTreeIsBounded) {
    const std::string dir = top_ + "/deep";
    fs::create_directories(dir);
    int fd = ::open(dir.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    constexpr int kLevels = 800;  // beyond the bound (512); paths stay below PATH_MAX for the cleanup
    for (int i = 0; i < kLevels; ++i) {
        ASSERT_EQ(::mkdirat(fd, "d", 0755), 0) << std::strerror(errno);
        const int next = ::openat(fd, "d", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        ::close(fd);
        ASSERT_GE(next, 0);
        fd = next;
    }
    ::close(fd);
    const auto u = disk_usage(dir);
    EXPECT_FALSE(u.complete);
    EXPECT_GE(u.inodes, 500u);
    EXPECT_LT(u.inodes, static_cast<std::uint64_t>(kLevels));
}
