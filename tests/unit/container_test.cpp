// The pure parts of containers (runtime/container.hpp): the Kubernetes command
// rule, users from the image's files, capabilities, the OCI config, records.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "runtime/container.hpp"
#include "runtime/containers.hpp"

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
