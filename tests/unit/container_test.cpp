// The pure parts of containers (runtime/container.hpp): the Kubernetes command
// rule, users from the image's files, capabilities, the OCI config, records.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "config/config.hpp"
#include "image/image.hpp"
#include "image/rootfs.hpp"
#include "network/network.hpp"
#include "runtime/container.hpp"
#include "runtime/containers.hpp"
#include "runtime/handlers.hpp"
#include "runtime/oci.hpp"
#include "runtime/pods.hpp"
#include "systemd/fake.hpp"

using namespace crisd;
using namespace crisd::runtime;

namespace {

ContainerConfig base() {
    ContainerConfig c;
    c.metadata.name = "c";
    c.image = "busybox";
    return c;
}

class Rootfs : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("crisd-ctr-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_ / "etc");
        std::ofstream(dir_ / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
        std::ofstream(dir_ / "etc/group") << "root:x:0:\nusers:x:100:app\napp:x:1000:\nextra:x:1001:app,x\n";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path dir_;
};

}  // namespace

TEST(ContainerCommand, KubernetesRule) {
    ImageConfig img;
    img.entrypoint = {"/entry"};
    img.cmd = {"default-arg"};
    auto c = base();
    EXPECT_EQ(process_args(c, img), (std::vector<std::string>{"/entry", "default-arg"}));
    c.args = {"a"};
    EXPECT_EQ(process_args(c, img), (std::vector<std::string>{"/entry", "a"}));
    c.command = {"/cmd"};
    EXPECT_EQ(process_args(c, img), (std::vector<std::string>{"/cmd", "a"}));
    c.args.clear();
    EXPECT_EQ(process_args(c, img), (std::vector<std::string>{"/cmd"}));  // the image's CMD is dropped
    EXPECT_THROW(process_args(base(), ImageConfig{}), Error);
}

TEST(ContainerSignal, Names) {
    EXPECT_EQ(signal_number("SIGTERM"), 15);
    EXPECT_EQ(signal_number("QUIT"), 3);
    EXPECT_EQ(signal_number("9"), 9);
    EXPECT_THROW(signal_number("SIGNOPE"), Error);
    // From an image's StopSignal: out of range is the image's error, never
    // a std::out_of_range escaping CreateContainer.
    EXPECT_THROW(signal_number("99999999999"), Error);
    EXPECT_THROW(signal_number("RTMIN+99999999999"), Error);
    EXPECT_THROW(signal_number("RTMIN+99"), Error);
    EXPECT_EQ(signal_number("RTMIN+1"), SIGRTMIN + 1);
}

TEST(ContainerCapabilities, PrivilegedKeepsTheBoundingSetWhateverItDrops) {
    auto c = base();
    c.privileged = true;
    c.drop_capabilities = {"ALL"};
    const std::set<std::string> bounding{"CAP_CHOWN", "CAP_SYS_ADMIN"};
    EXPECT_EQ(capabilities(c, bounding), (std::vector<std::string>{"CAP_CHOWN", "CAP_SYS_ADMIN"}));
    c.drop_capabilities = {"SYS_ADMIN"};
    EXPECT_EQ(capabilities(c, bounding), (std::vector<std::string>{"CAP_CHOWN", "CAP_SYS_ADMIN"}));
}

TEST_F(Rootfs, OutOfRangeIdsInTheImageAreErrorsNotExceptions) {
    std::ofstream(dir_ / "etc/passwd") << "huge:x:99999999999999999999:0::/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    std::ofstream(dir_ / "etc/group") << "huge:x:99999999999999999999:\napp:x:1000:\n";
    ImageConfig img;
    auto c = base();
    img.user = "app";
    EXPECT_EQ(resolve_user(c, img, dir_).uid, 1000u);  // the broken lines are skipped
    img.user = "huge";
    try {
        resolve_user(c, img, dir_);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
    for (const auto* user : {"99999999999999999999", "0:99999999999999999999"}) {
        img.user = user;
        try {
            resolve_user(c, img, dir_);
            ADD_FAILURE() << user;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), Code::InvalidArgument) << user;
        }
    }
}

TEST_F(Rootfs, UsersAndGroups) {
    ImageConfig img;
    auto c = base();
    auto u = resolve_user(c, img, dir_);
    EXPECT_EQ(u.uid, 0u);
    EXPECT_EQ(u.home, "/root");
    img.user = "app";
    u = resolve_user(c, img, dir_);
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 1000u);
    EXPECT_EQ(u.additional_gids, (std::vector<std::uint32_t>{1000, 100, 1001}));
    img.user = "app:extra";
    EXPECT_EQ(resolve_user(c, img, dir_).gid, 1001u);
    img.user = "4242:7";
    u = resolve_user(c, img, dir_);
    EXPECT_EQ(u.uid, 4242u);
    EXPECT_EQ(u.gid, 7u);
    c.run_as_user = 1000;
    c.run_as_group = 5;
    c.supplemental_groups = {9};
    u = resolve_user(c, img, dir_);
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 5u);
    EXPECT_EQ(u.additional_gids.back(), 9u);
    auto named = base();
    named.run_as_username = "nobody-here";
    try {
        resolve_user(named, img, dir_);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
}

// A hostile image whose /etc/passwd is a symlink to an absolute path must not
// make crisd read the node's file: the link resolves inside the rootfs.
TEST_F(Rootfs, PasswdSymlinkStaysInsideTheRootfs) {
    // A file on the node, outside the rootfs, that knows user "app" as 4243.
    const auto node_dir = std::filesystem::temp_directory_path() /
                          ("crisd-ctr-node-" + std::to_string(::getpid()));
    std::filesystem::create_directories(node_dir);
    std::ofstream(node_dir / "passwd") << "app:x:4243:4243::/:/bin/sh\n";
    ImageConfig img;
    auto c = base();
    c.run_as_username = "app";

    // The image's /etc/passwd links to that absolute path: inside the rootfs it
    // does not exist, so "app" is unknown rather than read from the node.
    std::filesystem::remove(dir_ / "etc/passwd");
    std::filesystem::create_symlink(node_dir / "passwd", dir_ / "etc/passwd");
    try {
        const auto u = resolve_user(c, img, dir_);
        ADD_FAILURE() << "resolved app as uid " << u.uid << " from outside the rootfs";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound) << e.what();
    }

    // The same absolute link does resolve inside the rootfs.
    std::filesystem::create_directories(dir_ / node_dir.relative_path());
    std::ofstream(dir_ / node_dir.relative_path() / "passwd") << "app:x:4242:4242::/:/bin/sh\n";
    EXPECT_EQ(resolve_user(c, img, dir_).uid, 4242u);
    std::filesystem::remove_all(node_dir);
}

TEST(ContainerCaps, DefaultAddDropAllAndBoundingSet) {
    const std::set<std::string> bounding{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
                                         "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                                         "CAP_KILL", "CAP_NET_ADMIN"};
    auto c = base();
    EXPECT_EQ(capabilities(c, bounding).size(), 9u);
    c.add_capabilities = {"net_admin", "SYS_RESOURCE"};  // not in the bounding set: left out
    auto caps = capabilities(c, bounding);
    EXPECT_EQ(caps.size(), 10u);
    c.drop_capabilities = {"ALL"};
    EXPECT_EQ(capabilities(c, bounding), (std::vector<std::string>{"CAP_NET_ADMIN"}));
    auto priv = base();
    priv.privileged = true;
    EXPECT_EQ(capabilities(priv, bounding).size(), bounding.size());
    auto all = base();
    all.add_capabilities = {"ALL"};
    EXPECT_EQ(capabilities(all, bounding).size(), bounding.size());
    auto bad = base();
    bad.add_capabilities = {"CAP_NOPE"};
    EXPECT_THROW(capabilities(bad, bounding), Error);
}

TEST(ContainerSpec, NamespacesMountsAndCgroupsPath) {
    ContainerRecord r;
    r.id = std::string(64, 'a');
    r.slice = "kubepods-pod1.slice";
    r.rootfs = "/merged";
    r.config = base();
    r.config.mounts.push_back({"/data", "/nonexistent-crisd-test", true, Propagation::HostToContainer});
    PodRecord pod;
    pod.id = std::string(64, 'b');
    pod.netns = "/run/crisd/ns/b/net";
    pod.ipcns = "/run/crisd/ns/b/ipc";
    SpecInputs in;
    in.record = &r;
    in.pod = &pod;
    in.args = {"sh"};
    try {
        oci_spec(in);
        ADD_FAILURE() << "a missing mount source";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
    r.config.mounts.back().host_path = "/";
    const auto j = oci_spec(in);
    EXPECT_EQ(j["linux"]["cgroupsPath"], "kubepods-pod1.slice:crisd:" + r.id);
    bool net = false, pid = false;
    for (const auto& ns : j["linux"]["namespaces"]) {
        if (ns["type"] == "network") net = ns["path"] == pod.netns;
        if (ns["type"] == "pid") pid = true;
    }
    EXPECT_TRUE(net);
    EXPECT_TRUE(pid);
    const auto& m = j["mounts"].back();
    EXPECT_EQ(m["destination"], "/data");
    EXPECT_EQ(m["options"], nlohmann::json::array({"rbind", "rslave", "ro"}));
    EXPECT_FALSE(j["process"].contains("oomScoreAdj"));
    EXPECT_FALSE(j["linux"]["maskedPaths"].empty());
}

TEST(ContainerRecord, RoundTrip) {
    ContainerRecord r;
    r.id = "x";
    r.pod_id = "p";
    r.config = base();
    r.config.envs = {{"A", "1"}};
    r.config.mounts.push_back({"/d", "/s", true, Propagation::Bidirectional});
    r.state = ContainerState::Exited;
    r.exit_code = 137;
    r.reason = "OOMKilled";
    const auto back = container_from_json(to_json(r));
    EXPECT_EQ(back.state, ContainerState::Exited);
    EXPECT_EQ(back.exit_code, 137);
    EXPECT_EQ(back.reason, "OOMKilled");
    EXPECT_EQ(back.config.envs, r.config.envs);
    EXPECT_EQ(back.config.mounts[0].propagation, Propagation::Bidirectional);
    EXPECT_THROW(container_from_json(nlohmann::json::object()), Error);
}

TEST(ContainerScope, CgroupPathOfNestedSlices) {
    EXPECT_EQ(ContainerManager::scope_cgroup("crisd.slice", "x"), "/crisd.slice/crisd-x.scope");
    EXPECT_EQ(ContainerManager::scope_cgroup("kubepods-burstable-pod1.slice", "x"),
              "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crisd-x.scope");
}

TEST(ContainerScope, SliceCgroupPath) {
    EXPECT_EQ(ContainerManager::slice_cgroup("crisd.slice"), "/crisd.slice");
    EXPECT_EQ(ContainerManager::slice_cgroup("kubepods-besteffort-pod1.slice"),
              "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice");
}

TEST(ContainerRecord, SeccompAndNewResourcesRoundTrip) {
    ContainerRecord r;
    r.id = "x";
    r.pod_id = "p";
    r.config = base();
    r.config.seccomp = {SeccompKind::Localhost, "/p.json"};
    r.config.resources.memory_swap_limit = -1;
    r.config.resources.hugepage_limits = {{"2MB", 4194304}};
    r.config.resources.unified = {{"memory.high", "1000"}};
    auto j = to_json(r);
    auto back = container_from_json(j);
    EXPECT_EQ(back.config.seccomp, r.config.seccomp);
    EXPECT_EQ(back.config.resources.memory_swap_limit, -1);
    EXPECT_EQ(back.config.resources.hugepage_limits, r.config.resources.hugepage_limits);
    EXPECT_EQ(back.config.resources.unified, r.config.resources.unified);
    // A record of an older crisd has none of these.
    j["config"].erase("seccomp");
    j["config"]["resources"].erase("memory_swap_limit");
    j["config"]["resources"].erase("hugepage_limits");
    j["config"]["resources"].erase("unified");
    back = container_from_json(j);
    EXPECT_EQ(back.config.seccomp.kind, SeccompKind::Unconfined);
    EXPECT_EQ(back.config.resources.memory_swap_limit, 0);
    EXPECT_TRUE(back.config.resources.hugepage_limits.empty());
}

TEST(ContainerResources, CheckedAgainstTheNode) {
    CgroupFeatures v1;
    v1.swap = true;
    v1.hugetlb = true;
    v1.hugepage_sizes = {"2MB", "1GB"};
    CgroupFeatures v2 = v1;
    v2.unified = true;
    const auto code = [](const ContainerResources& r, const CgroupFeatures& f) {
        try {
            check_resources(r, f);
        } catch (const Error& e) {
            return e.code();
        }
        return Code::Ok;
    };
    ContainerResources r;
    EXPECT_EQ(code(r, v1), Code::Ok);
    r.unified = {{"memory.high", "100"}};
    EXPECT_EQ(code(r, v1), Code::InvalidArgument) << "unified on a v1/hybrid node";
    EXPECT_EQ(code(r, v2), Code::Ok);
    r.unified = {{"../memory.high", "100"}};
    EXPECT_EQ(code(r, v2), Code::InvalidArgument);
    r = {};
    r.memory_limit = 100;
    r.memory_swap_limit = 50;
    EXPECT_EQ(code(r, v1), Code::InvalidArgument) << "memory + swap below memory";
    r.memory_swap_limit = -1;
    EXPECT_EQ(code(r, v1), Code::Ok);
    r.memory_swap_limit = 100;
    EXPECT_EQ(code(r, v1), Code::Ok);
    r = {};
    r.hugepage_limits = {{"2MB", 0}};
    EXPECT_EQ(code(r, v1), Code::Ok);
    r.hugepage_limits = {{"64KB", 0}};
    EXPECT_EQ(code(r, v1), Code::InvalidArgument) << "not a size the node has";
    EXPECT_EQ(code(r, CgroupFeatures{}), Code::Ok) << "no hugetlb: ignored, not refused";
    r.hugepage_limits = {{"2 megs", 0}};
    EXPECT_EQ(code(r, CgroupFeatures{}), Code::InvalidArgument);
}

TEST(ContainerSpec, SeccompSwapHugepagesAndUnified) {
    ContainerRecord r;
    r.id = std::string(64, 'a');
    r.slice = "crisd.slice";
    r.rootfs = "/merged";
    r.config = base();
    r.config.resources.memory_limit = 64 << 20;
    r.config.resources.hugepage_limits = {{"2MB", 2 << 20}};
    r.config.resources.unified = {{"memory.high", "1000"}};
    PodRecord pod;
    pod.id = std::string(64, 'b');
    SpecInputs in;
    in.record = &r;
    in.pod = &pod;
    in.args = {"sh"};
    // A node without swap accounting, hugetlb or cgroup v2: none of them.
    auto j = oci_spec(in);
    EXPECT_EQ(j["linux"]["resources"]["memory"], nlohmann::json({{"limit", 64 << 20}}));
    EXPECT_FALSE(j["linux"]["resources"].contains("hugepageLimits"));
    EXPECT_FALSE(j["linux"]["resources"].contains("unified"));
    EXPECT_FALSE(j["linux"].contains("seccomp"));
    // With them: memory.swap = the limit (no swap) unless a swap limit is given.
    in.cgroups = {true, true, true, {"2MB"}};
    in.seccomp = nlohmann::json{{"defaultAction", "SCMP_ACT_ALLOW"}};
    j = oci_spec(in);
    EXPECT_EQ(j["linux"]["resources"]["memory"]["swap"], 64 << 20);
    EXPECT_EQ(j["linux"]["resources"]["hugepageLimits"],
              nlohmann::json::parse(R"([{"pageSize": "2MB", "limit": 2097152}])"));
    EXPECT_EQ(j["linux"]["resources"]["unified"]["memory.high"], "1000");
    EXPECT_EQ(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    r.config.resources.memory_swap_limit = -1;
    EXPECT_EQ(oci_spec(in)["linux"]["resources"]["memory"]["swap"], -1);
    // Privileged: no seccomp.
    r.config.privileged = true;
    EXPECT_FALSE(oci_spec(in)["linux"].contains("seccomp"));
}

TEST(ContainerResources, CgroupFeaturesOfAV1Tree) {
    const auto dir = std::filesystem::temp_directory_path() / ("crisd-cg-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir / "cg/memory");
    std::filesystem::create_directories(dir / "hp/hugepages-2048kB");
    std::filesystem::create_directories(dir / "hp/hugepages-1048576kB");
    std::filesystem::create_directories(dir / "hp/hugepages-64kB");
    auto f = cgroup_features((dir / "cg").string(), (dir / "hp").string());
    EXPECT_FALSE(f.unified);
    EXPECT_FALSE(f.swap);
    EXPECT_FALSE(f.hugetlb);
    EXPECT_EQ(f.hugepage_sizes, (std::set<std::string>{"2MB", "1GB", "64KB"}));
    std::ofstream(dir / "cg/memory/memory.memsw.limit_in_bytes") << "9223372036854771712\n";
    std::filesystem::create_directories(dir / "cg/hugetlb");
    f = cgroup_features((dir / "cg").string(), (dir / "hp").string());
    EXPECT_TRUE(f.swap);
    EXPECT_TRUE(f.hugetlb);
    std::filesystem::remove_all(dir);
}

TEST(ContainerPidNamespace, OwnPodsTargetsOrTheNodes) {
    PodRecord pod;
    pod.id = std::string(64, 'b');
    auto c = base();
    // CONTAINER: a new one; NODE, or a host-PID pod: none.
    EXPECT_EQ(pid_namespace(c, pod, nullptr), std::optional<std::string>(""));
    c.pid = NamespaceMode::Node;
    EXPECT_EQ(pid_namespace(c, pod, nullptr), std::nullopt);
    c.pid = NamespaceMode::Container;
    pod.config.pid = NamespaceMode::Node;
    EXPECT_EQ(pid_namespace(c, pod, nullptr), std::nullopt);
    pod.config.pid = NamespaceMode::Container;

    // POD: the infra container's, which a pod without PID sharing lacks.
    c.pid = NamespaceMode::Pod;
    try {
        pid_namespace(c, pod, nullptr);
        ADD_FAILURE() << "a pod without an infra container";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::FailedPrecondition);
    }
    pod.config.pid = NamespaceMode::Pod;
    pod.infra.id = pod.id;
    pod.infra.pid = 4321;
    EXPECT_EQ(pid_namespace(c, pod, nullptr), std::optional<std::string>("/proc/4321/ns/pid"));
    pod.infra.pid = 0;
    EXPECT_THROW(pid_namespace(c, pod, nullptr), Error);
    pod.infra.pid = 4321;

    // TARGET: a running container of the same pod.
    c.pid = NamespaceMode::Target;
    EXPECT_THROW(pid_namespace(c, pod, nullptr), Error) << "no target_id";
    c.pid_target = "t";
    try {
        pid_namespace(c, pod, nullptr);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
    ContainerRecord target;
    target.id = "t";
    target.pod_id = pod.id;
    target.state = ContainerState::Running;
    target.pid = 777;
    EXPECT_EQ(pid_namespace(c, pod, &target), std::optional<std::string>("/proc/777/ns/pid"));
    target.state = ContainerState::Exited;
    EXPECT_THROW(pid_namespace(c, pod, &target), Error);
    target.state = ContainerState::Running;
    target.pod_id = std::string(64, 'c');
    try {
        pid_namespace(c, pod, &target);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::InvalidArgument);
    }
}

TEST(ContainerSpec, JoinsTheInfraContainersPidNamespace) {
    ContainerRecord r;
    r.id = std::string(64, 'a');
    r.slice = "crisd.slice";
    r.rootfs = "/merged";
    r.config = base();
    r.config.pid = NamespaceMode::Pod;
    PodRecord pod;
    pod.id = std::string(64, 'b');
    pod.config.pid = NamespaceMode::Pod;
    pod.infra.id = pod.id;
    pod.infra.pid = 4321;
    SpecInputs in;
    in.record = &r;
    in.pod = &pod;
    in.args = {"sh"};
    const auto j = oci_spec(in);
    int pid_entries = 0;
    for (const auto& ns : j["linux"]["namespaces"])
        if (ns["type"] == "pid") {
            ++pid_entries;
            EXPECT_EQ(ns["path"], "/proc/4321/ns/pid");
        }
    EXPECT_EQ(pid_entries, 1);
    EXPECT_TRUE(r.shares_pid_namespace());
    r.config.pid = NamespaceMode::Container;
    EXPECT_FALSE(r.shares_pid_namespace());
}

TEST(ContainerRecord, PidModeRoundTripsAndOldRecordsHaveContainer) {
    ContainerRecord r;
    r.id = "x";
    r.pod_id = "p";
    r.config = base();
    r.config.pid = NamespaceMode::Target;
    r.config.pid_target = "t";
    auto back = container_from_json(to_json(r));
    EXPECT_EQ(back.config.pid, NamespaceMode::Target);
    EXPECT_EQ(back.config.pid_target, "t");
    auto j = to_json(r);
    j["config"].erase("pid_mode");
    j["config"].erase("pid_target");
    back = container_from_json(j);
    EXPECT_EQ(back.config.pid, NamespaceMode::Container);
    EXPECT_EQ(back.config.pid_target, "");
}

// ContainerManager over records made by hand: a stand-in crisd-conmon (a
// shell blocked on a pipe, its command line naming the container) and a
// stand-in runtime (a script that logs its arguments and answers `state`
// from a file). No container runs; what is tested is what crisd records,
// emits and asks the runtime when a monitor dies, an exit file is damaged,
// a start fails, or a container sharing a PID namespace is stopped.
namespace {

using namespace std::chrono_literals;

class Manager : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/crisd-ctrmgr-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        runtime_ = dir_ + "/fake-runtime";
        std::ofstream(runtime_) << "#!/bin/sh\necho \"$@\" >> " << dir_ << "/runtime.log\n"
                                << "case \" $* \" in *\" state \"*) cat " << dir_ << "/state.json ;; esac\n";
        std::filesystem::permissions(runtime_, std::filesystem::perms::owner_all);
        auto cfg = config::defaults();
        cfg.runtime.runtimes["runc"].runtime_path = runtime_;
        handlers_ = std::make_unique<Handlers>(cfg.runtime, "");
        cfg.network.network_dir = dir_ + "/net.d";
        network_ = std::make_unique<network::Network>(cfg.network, dir_ + "/network");
        PodOptions po;
        po.root = dir_ + "/root";
        po.runroot = dir_ + "/run";
        pods_ = std::make_unique<PodManager>(po, *handlers_, *network_, fake_);
        image::Options io;
        io.root = dir_ + "/root/images";
        io.registries_conf = dir_ + "/registries.conf";
        images_ = std::make_unique<image::Images>(io);
        rootfs_ = std::make_unique<image::Rootfs>(*images_, dir_ + "/root/rootfs");
    }
    void TearDown() override {
        manager_.reset();
        for (const pid_t pid : monitors_) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        std::filesystem::remove_all(dir_);
    }
    ContainerManager& manager() {
        manager_ = std::make_unique<ContainerManager>(
            ContainerOptions{dir_ + "/root", dir_ + "/run", "/nonexistent", dir_ + "/seccomp.json"}, *handlers_,
            *pods_, *images_, *rootfs_, fake_);
        manager_->load();
        return *manager_;
    }
    // A process whose command line names `id`, as crisd-conmon's does.
    pid_t fake_monitor(const std::string& id) {
        int p[2];
        EXPECT_EQ(::pipe(p), 0);
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(p[0], 0);
            ::close(p[1]);
            ::execl("/bin/sh", "sh", "-c", "read x", id.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(p[0]);
        pipes_.emplace_back(p[1]);
        monitors_.push_back(pid);
        EXPECT_TRUE(eventually([&] { return monitor_alive(pid, id); })) << "the shell never ran";
        return pid;
    }
    ContainerRecord record(char fill, ContainerState state, pid_t monitor) {
        ContainerRecord r;
        r.id = std::string(64, fill);
        r.pod_id = std::string(64, 'f');
        r.config = base();
        r.config.metadata.name = std::string("c-") + fill;
        r.state = state;
        r.creating = false;
        r.runtime_handler = "runc";
        r.runtime_path = runtime_;
        r.runtime_root = dir_ + "/runtime-root";
        r.bundle = dir_ + "/run/containers/" + r.id;
        r.monitor_pid = monitor;
        r.pid = 1;
        r.slice = "crisd.slice";
        r.created_at = 1;
        if (state != ContainerState::Created) r.started_at = 2;
        std::filesystem::create_directories(r.runtime_root + "/" + r.id);  // the runtime knows it
        store(r);
        return r;
    }
    // The record as crisd saved it, for the next manager() to load.
    void store(const ContainerRecord& r) {
        std::filesystem::create_directories(dir_ + "/root/containers");
        std::ofstream(dir_ + "/root/containers/" + r.id + ".json") << to_json(r).dump();
    }
    // A container whose crisd-conmon is a live stand-in (see fake_monitor).
    ContainerRecord monitored(char fill, ContainerState state) {
        auto r = record(fill, state, 0);
        r.monitor_pid = fake_monitor(r.id);
        store(r);
        return r;
    }
    void runtime_says(const std::string& status) {
        std::ofstream(dir_ + "/state.json") << "{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"status\":\"" << status
                                            << "\",\"pid\":1}\n";
    }
    std::string runtime_log() {
        std::ifstream in(dir_ + "/runtime.log");
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    static bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 3s) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            if (cond()) return true;
            std::this_thread::sleep_for(20ms);
        }
        return cond();
    }

    std::string dir_, runtime_;
    std::unique_ptr<Handlers> handlers_;
    std::unique_ptr<network::Network> network_;
    systemd::FakeManager fake_;
    std::unique_ptr<PodManager> pods_;
    std::unique_ptr<image::Images> images_;
    std::unique_ptr<image::Rootfs> rootfs_;
    std::unique_ptr<ContainerManager> manager_;
    std::vector<pid_t> monitors_;
    std::vector<crisd::UniqueFd> pipes_;
};

}  // namespace

TEST_F(Manager, AMonitorThatDiesEndsItsContainerAtOnce) {
    const auto r = monitored('a', ContainerState::Running);
    auto& m = manager();
    ASSERT_EQ(m.status(r.id).state, ContainerState::Running);
    auto events = m.subscribe();
    const auto killed = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(r.monitor_pid, SIGKILL), 0);  // OOM in the pod's slice, say
    ASSERT_TRUE(eventually([&] { return m.status(r.id).state == ContainerState::Exited; }));
    EXPECT_LT(std::chrono::steady_clock::now() - killed, 3000ms);  // at once: without the pidfd it never ends
    const auto st = m.status(r.id);
    EXPECT_EQ(st.exit_code, 255);
    EXPECT_EQ(st.reason, "Error");
    EXPECT_NE(st.message.find("crisd-conmon"), std::string::npos) << st.message;
    EXPECT_NE(st.message.find("died"), std::string::npos) << st.message;
    const auto e = events->next(1s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type, ContainerEvent::Type::Stopped);
    const auto calls = fake_.calls();
    EXPECT_NE(std::find(calls.begin(), calls.end(), "kill_unit crisd-" + r.id + ".scope"), calls.end())
        << "what is left of the container is killed";
    // Saved: a restart sees the same.
    EXPECT_NE(std::ifstream(dir_ + "/root/containers/" + r.id + ".json").peek(), EOF);
    const auto saved = container_from_json(
        nlohmann::json::parse(std::ifstream(dir_ + "/root/containers/" + r.id + ".json")));
    EXPECT_EQ(saved.state, ContainerState::Exited);
    // Stop and Remove do not wait out timeouts for it.
    const auto t = std::chrono::steady_clock::now();
    m.stop(r.id, 30s);
    m.remove(r.id);
    EXPECT_LT(std::chrono::steady_clock::now() - t, 5s);
}

TEST_F(Manager, ADamagedExitFileEndsTheContainerAndNotCrisd) {
    auto a = monitored('a', ContainerState::Running);
    auto b = monitored('b', ContainerState::Running);
    std::filesystem::create_directories(dir_ + "/run/exits");
    std::ofstream(dir_ + "/run/exits/" + a.id) << "exit_code=banana\n";  // found at startup
    auto& m = manager();
    auto st = m.status(a.id);
    EXPECT_EQ(st.state, ContainerState::Exited);
    EXPECT_EQ(st.exit_code, 255);
    EXPECT_NE(st.message.find("exit file"), std::string::npos) << st.message;
    // One that appears while crisd runs: the watcher thread survives it.
    {
        std::ofstream tmp(dir_ + "/run/exits/.tmp-b");
        tmp << "garbage without an equals sign\n";
    }
    std::filesystem::rename(dir_ + "/run/exits/.tmp-b", dir_ + "/run/exits/" + b.id);
    ASSERT_TRUE(eventually([&] { return m.status(b.id).state == ContainerState::Exited; }));
    EXPECT_EQ(m.status(b.id).exit_code, 255);
}

TEST_F(Manager, ACreatedContainerThatTheRuntimeRunsIsRunningAfterARestart) {
    auto r = monitored('a', ContainerState::Created);
    runtime_says("running");  // crisd died between `runtime start` and its save
    auto& m = manager();
    EXPECT_EQ(m.status(r.id).state, ContainerState::Running);
    EXPECT_GT(m.status(r.id).started_at, 0);
}

TEST_F(Manager, AFailedStartRecordsWhatTheRuntimeSays) {
    auto a = monitored('a', ContainerState::Created);
    auto b = monitored('b', ContainerState::Created);
    runtime_says("created");
    auto& m = manager();
    auto events = m.subscribe();
    // No conmon answers (no control socket): as a dropped connection after
    // `runtime start` did its work. The runtime says it runs: it is running.
    runtime_says("running");
    m.start(a.id);
    EXPECT_EQ(m.status(a.id).state, ContainerState::Running);
    auto e = events->next(1s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type, ContainerEvent::Type::Started);
    EXPECT_EQ(e->container.id, a.id);
    // The runtime says it never started: the error stands, and the container
    // is killed so that it cannot start late behind a "created" record.
    runtime_says("created");
    EXPECT_THROW(m.start(b.id), Error);
    EXPECT_EQ(m.status(b.id).state, ContainerState::Created);
    EXPECT_NE(runtime_log().find("kill " + b.id + " 9"), std::string::npos) << runtime_log();
}

TEST_F(Manager, StoppingAnExitedContainerThatSharesAPidNamespaceKillsWhatItLeft) {
    auto shared = record('a', ContainerState::Exited, 0);
    shared.config.pid = NamespaceMode::Pod;
    store(shared);
    const auto own = record('b', ContainerState::Exited, 0);  // PID namespace of its own
    auto& m = manager();
    m.stop(shared.id, 10s);
    m.stop(own.id, 10s);
    const auto log = runtime_log();
    EXPECT_NE(log.find("kill --all " + shared.id + " 9"), std::string::npos) << log;
    EXPECT_EQ(log.find(own.id), std::string::npos) << "nothing can be left of it: " << log;
}
