// Seccomp profiles (runtime/seccomp.hpp): the CRI's profile selection and the
// conversion of containers-format and OCI-format profiles into linux.seccomp.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "runtime/seccomp.hpp"
#include "error_code.hpp"

using namespace crisd;
using namespace crisd::runtime;
using json = nlohmann::json;

using crisd::test::code_of;
using crisd::test::message_of;

namespace {

// The names of the rules kept, with their actions: "chroot:SCMP_ACT_ALLOW".
std::vector<std::string> kept(const json& oci) {
    std::vector<std::string> out;
    if (!oci.contains("syscalls")) return out;
    for (const auto& s : oci["syscalls"])
        for (const auto& n : s["names"]) out.push_back(n.get<std::string>() + ":" + s["action"].get<std::string>());
    return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

const json kProfile = json::parse(R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 38,
  "defaultErrno": "ENOSYS",
  "archMap": [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
  ],
  "syscalls": [
    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}], "includes": {}, "excludes": {}},
    {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
    {"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
    {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
    {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "EPERM",
     "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
    {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]}},
    {"names": ["new_thing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
    {"names": ["old_thing"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.8"}},
    {"names": [], "action": "SCMP_ACT_ALLOW"},
    {"name": "single", "action": "SCMP_ACT_LOG"}
  ]
})");

}  // namespace

TEST(SeccompRequest, ProfilePathStrings) {
    EXPECT_EQ(seccomp_from_path("").kind, SeccompKind::Unconfined);
    EXPECT_EQ(seccomp_from_path("unconfined").kind, SeccompKind::Unconfined);
    EXPECT_EQ(seccomp_from_path("runtime/default").kind, SeccompKind::RuntimeDefault);
    EXPECT_EQ(seccomp_from_path("docker/default").kind, SeccompKind::RuntimeDefault);
    EXPECT_EQ(seccomp_from_path("localhost//var/lib/kubelet/seccomp/p.json"),
              (SeccompRequest{SeccompKind::Localhost, "/var/lib/kubelet/seccomp/p.json"}));
    EXPECT_EQ(code_of([] { seccomp_from_path("localhost/relative.json"); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([] { seccomp_from_path("localhost/"); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([] { seccomp_from_path("strict"); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([] { seccomp_localhost(""); }), Code::InvalidArgument);
    EXPECT_EQ(to_string(seccomp_from_path("docker/default")), "runtime/default");
    EXPECT_EQ(to_string(seccomp_localhost("/p.json")), "localhost//p.json");
}

TEST(SeccompConvert, ArchMapPicksTheNativeArchAndItsSubArches) {
    const auto amd64 = seccomp_to_oci(kProfile, {"amd64", {}, {6, 1}}, "p");
    EXPECT_EQ(amd64["architectures"], json::array({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
    EXPECT_EQ(amd64["defaultAction"], "SCMP_ACT_ERRNO");
    EXPECT_EQ(amd64["defaultErrnoRet"], 38);
    EXPECT_FALSE(amd64.contains("defaultErrno"));
    EXPECT_TRUE(has(kept(amd64), "arch_prctl:SCMP_ACT_ALLOW"));
    EXPECT_FALSE(has(kept(amd64), "arm_fadvise64_64:SCMP_ACT_ALLOW"));

    const auto arm64 = seccomp_to_oci(kProfile, {"arm64", {}, {6, 1}}, "p");
    EXPECT_EQ(arm64["architectures"], json::array({"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}));
    EXPECT_FALSE(has(kept(arm64), "arch_prctl:SCMP_ACT_ALLOW"));
    EXPECT_TRUE(has(kept(arm64), "arm_fadvise64_64:SCMP_ACT_ALLOW"));

    // An arch the map does not name: libseccomp's native one (no list).
    EXPECT_FALSE(seccomp_to_oci(kProfile, {"riscv64", {}, {6, 1}}, "p").contains("architectures"));
}

TEST(SeccompConvert, CapabilitiesIncludeAndExclude) {
    const auto none = kept(seccomp_to_oci(kProfile, {"amd64", {}, {6, 1}}, "p"));
    EXPECT_TRUE(has(none, "chroot:SCMP_ACT_ERRNO"));
    EXPECT_FALSE(has(none, "chroot:SCMP_ACT_ALLOW"));
    EXPECT_FALSE(has(none, "mount:SCMP_ACT_ALLOW"));

    const auto chroot = kept(seccomp_to_oci(kProfile, {"amd64", {"CAP_SYS_CHROOT"}, {6, 1}}, "p"));
    EXPECT_TRUE(has(chroot, "chroot:SCMP_ACT_ALLOW"));
    EXPECT_FALSE(has(chroot, "chroot:SCMP_ACT_ERRNO"));
    EXPECT_FALSE(has(chroot, "mount:SCMP_ACT_ALLOW")) << "includes need every capability";

    const auto both = kept(seccomp_to_oci(kProfile, {"amd64", {"CAP_SYS_CHROOT", "CAP_SYS_ADMIN"}, {6, 1}}, "p"));
    EXPECT_TRUE(has(both, "mount:SCMP_ACT_ALLOW"));
}

TEST(SeccompConvert, MinKernel) {
    const auto new_kernel = kept(seccomp_to_oci(kProfile, {"amd64", {}, {5, 10}}, "p"));
    EXPECT_TRUE(has(new_kernel, "new_thing:SCMP_ACT_ALLOW"));
    EXPECT_FALSE(has(new_kernel, "old_thing:SCMP_ACT_ALLOW"));
    const auto exact = kept(seccomp_to_oci(kProfile, {"amd64", {}, {5, 8}}, "p"));
    EXPECT_TRUE(has(exact, "new_thing:SCMP_ACT_ALLOW"));
    const auto old_kernel = kept(seccomp_to_oci(kProfile, {"amd64", {}, {4, 19}}, "p"));
    EXPECT_FALSE(has(old_kernel, "new_thing:SCMP_ACT_ALLOW"));
    EXPECT_TRUE(has(old_kernel, "old_thing:SCMP_ACT_ALLOW"));
}

TEST(SeccompConvert, ErrnoRetArgsNamesAndEmptyRules) {
    const auto oci = seccomp_to_oci(kProfile, {"amd64", {}, {6, 1}}, "p");
    for (const auto& s : oci["syscalls"]) {
        EXPECT_FALSE(s["names"].empty()) << "empty rules are dropped";
        EXPECT_FALSE(s.contains("includes"));
        EXPECT_FALSE(s.contains("excludes"));
        EXPECT_FALSE(s.contains("comment"));
        EXPECT_FALSE(s.contains("errno"));
        if (s["names"][0] == "chroot") {
            EXPECT_EQ(s["errnoRet"], 1);
        }
        if (s["names"][0] == "read") {
            EXPECT_FALSE(s.contains("args")) << "no empty args";
            EXPECT_FALSE(s.contains("errnoRet"));
        }
        if (s["names"][0] == "personality") {
            EXPECT_EQ(s["args"], json::parse(R"([{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_EQ"}])"));
        }
    }
    EXPECT_TRUE(has(kept(oci), "single:SCMP_ACT_LOG")) << "\"name\" as well as \"names\"";
}

TEST(SeccompConvert, OciFormatPassesThrough) {
    const auto oci_profile = json::parse(R"({
      "defaultAction": "SCMP_ACT_ALLOW",
      "architectures": ["SCMP_ARCH_X86_64"],
      "flags": ["SECCOMP_FILTER_FLAG_LOG"],
      "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    })");
    const auto out = seccomp_to_oci(oci_profile, {"amd64", {}, {6, 1}}, "p");
    EXPECT_EQ(out["architectures"], json::array({"SCMP_ARCH_X86_64"}));
    EXPECT_EQ(out["flags"], json::array({"SECCOMP_FILTER_FLAG_LOG"}));
    EXPECT_EQ(out["syscalls"], oci_profile["syscalls"]);
}

TEST(SeccompConvert, InvalidProfilesAreInvalidArgumentNamingTheFile) {
    EXPECT_EQ(code_of([] { parse_seccomp_profile("{ not json", "/x.json"); }), Code::InvalidArgument);
    EXPECT_NE(message_of([] { parse_seccomp_profile("{ not json", "/x.json"); }).find("/x.json"), std::string::npos);
    EXPECT_EQ(code_of([] { parse_seccomp_profile("[1]", "/x.json"); }), Code::InvalidArgument);
    const SeccompTarget t{"amd64", {}, {6, 1}};
    for (const char* bad : {
             R"({})",
             R"({"defaultAction": "SCMP_ACT_MAYBE"})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": -1})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                 "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_ERRNO"}]})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]})",
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "five"}}]})",
             // A broken rule is an error even where it would be filtered out.
             R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOPE",
                 "includes": {"arches": ["s390x"]}}]})",
         }) {
        EXPECT_EQ(code_of([&] { seccomp_to_oci(json::parse(bad), t, "/x.json"); }), Code::InvalidArgument) << bad;
        EXPECT_NE(message_of([&] { seccomp_to_oci(json::parse(bad), t, "/x.json"); }).find("/x.json"),
                  std::string::npos);
    }
}

// The containers-common file the node has (Debian's golang-github-containers-common).
TEST(SeccompConvert, TheInstalledDefaultProfile) {
    const std::string path = "/usr/share/containers/seccomp.json";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not installed";
    SeccompProfiles profiles(path);
    const auto plain = profiles.for_container({SeccompKind::RuntimeDefault, ""}, false, {"CAP_CHOWN"});
    ASSERT_TRUE(plain);
    EXPECT_EQ((*plain)["defaultAction"], "SCMP_ACT_ERRNO");
    const auto admin = profiles.for_container({SeccompKind::RuntimeDefault, ""}, false, {"CAP_SYS_ADMIN"});
    ASSERT_TRUE(admin);
    EXPECT_GT((*admin)["syscalls"].size(), 0u);
    EXPECT_NE(plain->dump(), admin->dump()) << "CAP_SYS_ADMIN allows more";
    EXPECT_FALSE(profiles.for_container({SeccompKind::RuntimeDefault, ""}, true, {}));
    EXPECT_FALSE(profiles.for_container({}, false, {}));
}

class SeccompFiles : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("crisd-seccomp-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string write(const std::string& name, const std::string& text) {
        const auto p = (dir_ / name).string();
        std::ofstream(p) << text;
        return p;
    }
    std::filesystem::path dir_;
};

TEST_F(SeccompFiles, DefaultIsCachedAndReadAgainWhenChanged) {
    const auto path = write("default.json", R"({"defaultAction": "SCMP_ACT_ALLOW"})");
    SeccompProfiles profiles(path);
    const SeccompRequest rd{SeccompKind::RuntimeDefault, ""};
    EXPECT_EQ((*profiles.for_container(rd, false, {}))["defaultAction"], "SCMP_ACT_ALLOW");
    EXPECT_EQ((*profiles.for_container(rd, false, {"CAP_CHOWN"}))["defaultAction"], "SCMP_ACT_ALLOW");
    EXPECT_EQ(profiles.default_reads(), 1u) << "parsed once";
    // Changed (size and mtime differ): read again.
    write("default.json", R"({"defaultAction": "SCMP_ACT_LOG", "syscalls": []})");
    EXPECT_EQ((*profiles.for_container(rd, false, {}))["defaultAction"], "SCMP_ACT_LOG");
    EXPECT_EQ(profiles.default_reads(), 2u);
    // Broken: FailedPrecondition naming the file and the key.
    write("default.json", R"({"defaultAction": )");
    const auto msg = message_of([&] { profiles.for_container(rd, false, {}); });
    EXPECT_EQ(code_of([&] { profiles.for_container(rd, false, {}); }), Code::FailedPrecondition);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("crisd.runtime.seccomp_profile"), std::string::npos) << msg;
    std::filesystem::remove(path);
    EXPECT_EQ(code_of([&] { profiles.for_container(rd, false, {}); }), Code::FailedPrecondition);
    // Unconfined never reads it.
    EXPECT_FALSE(profiles.for_container({}, false, {}));
}

TEST_F(SeccompFiles, LocalhostProfiles) {
    SeccompProfiles profiles((dir_ / "none.json").string());
    const auto docker = write("docker.json", R"({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]})");
    auto out = profiles.for_container(seccomp_localhost(docker), false, {});
    ASSERT_TRUE(out);
    EXPECT_EQ((*out)["syscalls"].size(), 1u);
    out = profiles.for_container(seccomp_localhost(docker), false, {"CAP_SYS_ADMIN"});
    EXPECT_FALSE(out->contains("syscalls"));

    const auto missing = (dir_ / "missing.json").string();
    EXPECT_EQ(code_of([&] { profiles.for_container(seccomp_localhost(missing), false, {}); }), Code::InvalidArgument);
    EXPECT_NE(message_of([&] { profiles.for_container(seccomp_localhost(missing), false, {}); }).find(missing),
              std::string::npos);
    const auto broken = write("broken.json", "{");
    EXPECT_EQ(code_of([&] { profiles.for_container(seccomp_localhost(broken), false, {}); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([&] { profiles.for_container(seccomp_localhost(dir_.string()), false, {}); }),
              Code::InvalidArgument) << "a directory";
    // Privileged: no seccomp, the file is not even read.
    EXPECT_FALSE(profiles.for_container(seccomp_localhost(missing), true, {}));
}
