// The pure parts of pod sandboxes (records, filters, files for containers,
// sysctls, name reservation) and PodManager for host-namespace pods, which
// need no privileges (no namespaces, no mounts, no CNI).
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "common/error.hpp"
#include "config/config.hpp"
#include "network/network.hpp"
#include "runtime/handlers.hpp"
#include "runtime/infra.hpp"
#include "runtime/pod.hpp"
#include "runtime/pods.hpp"
#include "systemd/fake.hpp"

using namespace crisd;
using namespace crisd::runtime;

namespace {

PodRecord sample() {
    PodRecord r;
    r.id = std::string(64, 'a');
    r.config.metadata = {"web", "uid-1", "default", 2};
    r.config.hostname = "web-host";
    r.config.log_directory = "/var/log/pods/x";
    r.config.dns = {{"10.0.0.10"}, {"svc.cluster.local", "cluster.local"}, {"ndots:5"}};
    r.config.port_mappings = {{"tcp", 80, 8080, "127.0.0.1"}, {"udp", 53, 0, ""}};
    r.config.labels = {{"app", "web"}, {"tier", "front"}};
    r.config.annotations = {{"a", "b"}};
    r.config.cgroup_parent = "kubepods-pod1.slice";
    r.config.sysctls = {{"net.ipv4.ip_unprivileged_port_start", "0"}};
    r.config.network = NamespaceMode::Pod;
    r.config.pid = NamespaceMode::Node;
    r.config.ipc = NamespaceMode::Pod;
    r.config.privileged = true;
    r.config.runtime_handler = "crun";
    r.state = PodState::Ready;
    r.creating = false;
    r.created_at = 1234567890123;
    r.runtime_handler = "crun";
    r.slice = "kubepods-pod1.slice";
    r.run_dir = "/run/crisd/pods/" + r.id;
    r.ns_dir = "/run/crisd/ns/" + r.id;
    r.netns = r.ns_dir + "/net";
    r.ipcns = r.ns_dir + "/ipc";
    r.utsns = r.ns_dir + "/uts";
    r.shm = r.run_dir + "/shm";
    r.network_attached = true;
    r.ips = {"10.85.0.4", "fd00::4"};
    return r;
}

}  // namespace

TEST(PodRecord, RoundTripsThroughJson) {
    const auto r = sample();
    const auto back = record_from_json(nlohmann::json::parse(to_json(r).dump()));
    EXPECT_EQ(to_json(back), to_json(r));
    EXPECT_EQ(back.config.metadata.attempt, 2u);
    EXPECT_EQ(back.config.pid, NamespaceMode::Node);
    ASSERT_EQ(back.config.port_mappings.size(), 2u);
    EXPECT_EQ(back.config.port_mappings[0].host_ip, "127.0.0.1");
    EXPECT_EQ(back.ips, r.ips);
    EXPECT_EQ(back.resolv_conf(), r.run_dir + "/resolv.conf");
}

TEST(PodRecord, MalformedIsDataLoss) {
    try {
        record_from_json(nlohmann::json::parse(R"({"kind":"crisdPodV1","id":"x"})"));
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DataLoss);
    }
    auto j = to_json(sample());
    j["state"] = "SANDBOX_WEIRD";
    EXPECT_THROW(record_from_json(j), Error);
    j = to_json(sample());
    j["kind"] = "other";
    EXPECT_THROW(record_from_json(j), Error);
}

TEST(PodRecord, PodNetworkCarriesTheCniView) {
    const auto n = sample().pod_network();
    EXPECT_EQ(n.pod_id, std::string(64, 'a'));
    EXPECT_EQ(n.name, "web");
    EXPECT_EQ(n.ns, "default");
    EXPECT_EQ(n.uid, "uid-1");
    EXPECT_EQ(n.netns, "/run/crisd/ns/" + std::string(64, 'a') + "/net");
    EXPECT_EQ(n.port_mappings.size(), 2u);
}

TEST(PodFilter, IdPrefixStateAndLabels) {
    const auto r = sample();
    EXPECT_TRUE(matches({}, r));
    EXPECT_TRUE(matches({"aaaa", {}, {}}, r));
    EXPECT_TRUE(matches({r.id, {}, {}}, r));
    EXPECT_FALSE(matches({"ab", {}, {}}, r));
    EXPECT_TRUE(matches({"", PodState::Ready, {}}, r));
    EXPECT_FALSE(matches({"", PodState::NotReady, {}}, r));
    EXPECT_TRUE(matches({"", {}, {{"app", "web"}}}, r));
    EXPECT_TRUE(matches({"", {}, {{"app", "web"}, {"tier", "front"}}}, r));
    EXPECT_FALSE(matches({"", {}, {{"app", "web"}, {"tier", "back"}}}, r));
    EXPECT_FALSE(matches({"", {}, {{"missing", ""}}}, r));
}

TEST(PodFiles, ResolvConf) {
    EXPECT_EQ(render_resolv_conf({{"10.0.0.10", "10.0.0.11"}, {"a.svc", "svc"}, {"ndots:5", "edns0"}}),
              "search a.svc svc\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5 edns0\n");
    EXPECT_EQ(render_resolv_conf({{"1.1.1.1"}, {}, {}}), "nameserver 1.1.1.1\n");
    EXPECT_EQ(render_resolv_conf({}), "");
}

TEST(PodFiles, Hosts) {
    const auto h = render_hosts("web", {"10.85.0.4", "fd00::4"});
    EXPECT_NE(h.find("127.0.0.1\tlocalhost\n"), std::string::npos);
    EXPECT_NE(h.find("::1\tlocalhost"), std::string::npos);
    EXPECT_NE(h.find("10.85.0.4\tweb\n"), std::string::npos);
    EXPECT_NE(h.find("fd00::4\tweb\n"), std::string::npos);
    EXPECT_EQ(render_hosts("web", {}).find("\tweb"), std::string::npos);
}

TEST(Sysctl, Classification) {
    EXPECT_EQ(classify_sysctl("net.ipv4.ip_forward"),
              std::make_pair(std::string("net.ipv4.ip_forward"), SysctlScope::Network));
    EXPECT_EQ(classify_sysctl("kernel.shmmax").second, SysctlScope::Ipc);
    EXPECT_EQ(classify_sysctl("kernel.msgmax").second, SysctlScope::Ipc);
    EXPECT_EQ(classify_sysctl("kernel.sem").second, SysctlScope::Ipc);
    EXPECT_EQ(classify_sysctl("fs.mqueue.queues_max").second, SysctlScope::Ipc);
    // Slashes as separators keep dots inside a component (an interface name).
    const auto [dotted, scope] = classify_sysctl("net/ipv4/conf/eth0.100/forwarding");
    EXPECT_EQ(dotted, "net.ipv4.conf.eth0/100.forwarding");
    EXPECT_EQ(scope, SysctlScope::Network);
    EXPECT_EQ(sysctl_path(dotted), "/proc/sys/net/ipv4/conf/eth0.100/forwarding");
    EXPECT_EQ(sysctl_path("net.ipv4.ip_forward"), "/proc/sys/net/ipv4/ip_forward");
    for (const char* bad : {"kernel.panic", "vm.swappiness", "kernel.semx", "", ".net", "net..x", "net."}) {
        try {
            classify_sysctl(bad);
            ADD_FAILURE() << bad << " accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), Code::InvalidArgument) << bad;
        }
    }
}

TEST(Sysctl, MustFitTheNamespaces) {
    PodConfig c;
    c.sysctls = {{"net.ipv4.ip_unprivileged_port_start", "0"}, {"kernel.shmmni", "4096"}};
    EXPECT_NO_THROW(check_sysctls(c));
    c.network = NamespaceMode::Node;
    EXPECT_THROW(check_sysctls(c), Error);
    c.network = NamespaceMode::Pod;
    c.ipc = NamespaceMode::Node;
    EXPECT_THROW(check_sysctls(c), Error);
    c.ipc = NamespaceMode::Pod;
    c.sysctls = {{"kernel.panic", "1"}};
    try {
        check_sysctls(c);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("not namespaced"), std::string::npos) << e.what();
    }
}

TEST(NameRegistry, ConflictNamesTheHolder) {
    NameRegistry names("pod sandbox");
    EXPECT_TRUE(names.reserve("k", "id1").owner);
    names.finish("k", nullptr, false);
    try {
        names.reserve("k", "id2");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::AlreadyExists);
        EXPECT_NE(std::string(e.what()).find("id1"), std::string::npos);
    }
    names.release("k");
    EXPECT_TRUE(names.reserve("k", "id3").owner);
}

TEST(NameRegistry, RetryWaitsForTheCreationInFlight) {
    NameRegistry names("pod sandbox");
    ASSERT_TRUE(names.reserve("k", "first").owner);
    auto retry = std::async(std::launch::async, [&] { return names.reserve("k", "second"); });
    EXPECT_EQ(retry.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
    names.finish("k", nullptr, true);
    const auto claim = retry.get();
    EXPECT_FALSE(claim.owner);
    EXPECT_EQ(claim.id, "first");
    // The retry got the pod, so the next one is a conflict again.
    EXPECT_THROW(names.reserve("k", "third"), Error);
}

TEST(NameRegistry, RetryGetsTheErrorOfTheFirst) {
    NameRegistry names("pod sandbox");
    ASSERT_TRUE(names.reserve("k", "first").owner);
    auto retry = std::async(std::launch::async, [&] { return names.reserve("k", "second"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    names.finish("k", std::make_exception_ptr(Error(Code::Internal, "boom")), false);
    try {
        retry.get();
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Internal);
    }
    EXPECT_TRUE(names.reserve("k", "again").owner);  // the name is free
}

TEST(NameRegistry, ConflictNamesTheKind) {
    NameRegistry names("container");
    ASSERT_TRUE(names.reserve("k", "id1").owner);
    names.finish("k", nullptr, false);
    try {
        names.reserve("k", "id2");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("the container name \"k\" is already reserved for id1"),
                  std::string::npos)
            << e.what();
    }
}

// The kubelet retries after its own timeout; a hung creation (a CNI ADD that
// never returns) must not hold a thread per retry for ever.
TEST(NameRegistry, RetryWaitsNoLongerThanItsDeadlineAndTheCreationGoesOn) {
    NameRegistry names("pod sandbox");
    ASSERT_TRUE(names.reserve("k", "first").owner);
    Caller caller;
    caller.deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(300);
    const auto start = std::chrono::steady_clock::now();
    try {
        names.reserve("k", "second", caller);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DeadlineExceeded) << e.what();
    }
    const auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_GE(waited, std::chrono::milliseconds(250));
    EXPECT_LT(waited, std::chrono::seconds(2));
    // The creation finishes after every caller went away: the next request gets it.
    names.finish("k", nullptr, true);
    const auto claim = names.reserve("k", "third");
    EXPECT_FALSE(claim.owner);
    EXPECT_EQ(claim.id, "first");
}

TEST(NameRegistry, RetryStopsWaitingWhenItsCallerCancels) {
    NameRegistry names("pod sandbox");
    ASSERT_TRUE(names.reserve("k", "first").owner);
    std::atomic<bool> cancelled{false};
    Caller caller;
    caller.cancelled = [&] { return cancelled.load(); };
    auto retry = std::async(std::launch::async, [&] { return names.reserve("k", "second", caller); });
    EXPECT_EQ(retry.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
    cancelled = true;
    ASSERT_EQ(retry.wait_for(std::chrono::seconds(2)), std::future_status::ready);
    try {
        retry.get();
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Cancelled) << e.what();
    }
    names.finish("k", nullptr, false);  // its own caller got it
    EXPECT_THROW(names.reserve("k", "third"), Error);
}

TEST(NameRegistry, AnAbandonedNameGoesToTheWaitingRetry) {
    NameRegistry names("container");
    ASSERT_TRUE(names.reserve("k", "first").owner);
    auto retry = std::async(std::launch::async, [&] { return names.reserve("k", "second"); });
    EXPECT_EQ(retry.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
    names.abandon("k");  // the first gave up before it made anything
    const auto claim = retry.get();
    EXPECT_TRUE(claim.owner);
    EXPECT_EQ(claim.id, "second");
}

TEST(NameRegistry, UnclaimedPodGoesToTheNextRequest) {
    NameRegistry names("pod sandbox");
    ASSERT_TRUE(names.reserve("k", "first").owner);
    names.finish("k", nullptr, true);  // the caller had gone
    const auto claim = names.reserve("k", "second");
    EXPECT_FALSE(claim.owner);
    EXPECT_EQ(claim.id, "first");
    EXPECT_THROW(names.reserve("k", "third"), Error);
}

// PodManager with host namespaces: no privileges needed.
class PodManagerTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/crisd-pod-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        auto cfg = config::defaults();
        cfg.runtime.runtimes["runc"].runtime_path = "/bin/sh";
        handlers_ = std::make_unique<Handlers>(cfg.runtime, "");
        cfg.network.network_dir = dir_ + "/net.d";
        network_ = std::make_unique<network::Network>(cfg.network, dir_ + "/network");
        std::filesystem::create_directories(dir_ + "/etc");
        std::ofstream(dir_ + "/etc/hosts") << "127.0.0.1 node-hosts\n";
        std::ofstream(dir_ + "/etc/resolv.conf") << "nameserver 192.0.2.1\n";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::unique_ptr<PodManager> manager() {
        PodOptions o;
        o.root = dir_ + "/root";
        o.runroot = dir_ + "/run";
        o.shm_size = 64 << 20;
        o.host_etc = dir_ + "/etc";
        o.conmon_path = conmon_path_;
        o.pause_path = "/bin/true";  // never runs: the fake conmons never start a container
        return std::make_unique<PodManager>(o, *handlers_, *network_, fake_);
    }
    // A stand-in crisd-conmon (a shell script speaking the sync and start
    // pipes, as in monitor_test): `after_start` runs once crisd released it.
    void fake_conmon(const std::string& after_start) {
        conmon_path_ = dir_ + "/fake-conmon";
        std::ofstream(conmon_path_) << "#!/bin/sh\n(\n"
                                       "printf 'monitor 4242 0\\n' >&3\n"
                                       "head -c1 <&4 >/dev/null || exit 0\n"
                                    << after_start << "\n) &\n";
        std::filesystem::permissions(conmon_path_, std::filesystem::perms::owner_all);
    }
    // A host pod made by RunPodSandbox, then its record turned back into
    // that of a RunPodSandbox crisd died in (creating, not ready); the
    // record is for the test to change and write to `path`.
    struct Interrupted {
        PodRecord rec;
        std::string path;
    };
    Interrupted interrupted(const std::string& name) {
        std::string id;
        {
            auto pods = manager();
            id = pods->run(host_pod(name));
        }
        Interrupted out;
        out.path = dir_ + "/root/pods/" + id + ".json";
        out.rec = record_from_json(nlohmann::json::parse(std::ifstream(out.path)));
        out.rec.creating = true;
        out.rec.state = PodState::NotReady;
        return out;
    }
    static PodConfig host_pod(const std::string& name) {
        PodConfig c;
        c.metadata = {name, "uid-" + name, "default", 0};
        c.network = NamespaceMode::Node;
        c.ipc = NamespaceMode::Node;
        c.pid = NamespaceMode::Node;
        c.labels = {{"app", name}};
        return c;
    }

    std::string dir_;
    std::string conmon_path_ = "/nonexistent/crisd-conmon";
    std::unique_ptr<Handlers> handlers_;
    std::unique_ptr<network::Network> network_;
    systemd::FakeManager fake_;
};

TEST_F(PodManagerTest, LifecycleOfAHostPod) {
    auto pods = manager();
    auto c = host_pod("a");
    c.cgroup_parent = "kubepods-besteffort-poda.slice";
    const auto id = pods->run(c);
    ASSERT_EQ(id.size(), 64u);
    EXPECT_EQ(pods->count(), 1u);
    const auto rec = pods->status(id);
    EXPECT_EQ(rec.state, PodState::Ready);
    EXPECT_TRUE(rec.netns.empty());
    EXPECT_TRUE(rec.shm.empty());
    EXPECT_EQ(rec.slice, "kubepods-besteffort-poda.slice");
    const auto slices = fake_.created_slices();
    EXPECT_NE(std::find(slices.begin(), slices.end(), "kubepods-besteffort-poda.slice"), slices.end());
    EXPECT_TRUE(rec.slice_owned);
    // Host-network pods get the node's hosts and resolv.conf (no DNS config).
    std::ifstream hosts(rec.hosts());
    std::string line;
    std::getline(hosts, line);
    EXPECT_EQ(line, "127.0.0.1 node-hosts");
    std::ifstream resolv(rec.resolv_conf());
    std::getline(resolv, line);
    EXPECT_EQ(line, "nameserver 192.0.2.1");
    EXPECT_TRUE(std::filesystem::exists(dir_ + "/root/pods/" + id + ".json"));

    EXPECT_EQ(pods->status(id.substr(0, 12)).id, id);  // a unique prefix
    EXPECT_EQ(pods->list({"", PodState::Ready, {{"app", "a"}}}).size(), 1u);
    pods->stop(id);
    pods->stop(id);
    EXPECT_EQ(pods->status(id).state, PodState::NotReady);
    EXPECT_TRUE(pods->list({"", PodState::Ready, {}}).empty());
    pods->remove(id);
    pods->remove(id);  // gone already: fine
    EXPECT_EQ(pods->count(), 0u);
    // crisd made the pod's slice: stopped with the pod; its parents stay.
    EXPECT_FALSE(fake_.unit("kubepods-besteffort-poda.slice"));
    EXPECT_TRUE(fake_.unit("kubepods-besteffort.slice"));
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/root/pods/" + id + ".json"));
    EXPECT_FALSE(std::filesystem::exists(rec.run_dir));
    try {
        pods->status(id);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
    pods->stop(id);  // gone: stopped already, no error (api.proto)
    EXPECT_THROW(pods->stop(""), Error);  // no id at all: InvalidArgument
    // The name is free again.
    pods->remove(pods->run(c));
}

TEST_F(PodManagerTest, ASliceIsStoppedOnlyByItsCreatorAndOnlyWhenNothingRunsInIt) {
    auto pods = manager();
    auto a = host_pod("a");
    a.cgroup_parent = "kubepods-poda.slice";
    auto b = host_pod("b");
    b.cgroup_parent = "kubepods-poda.slice";
    const auto ida = pods->run(a);
    const auto idb = pods->run(b);
    EXPECT_TRUE(pods->status(ida).slice_owned);
    EXPECT_FALSE(pods->status(idb).slice_owned);  // it was there already
    systemd::ScopeSpec scope;  // a container of b
    scope.name = "crisd-b.scope";
    scope.slice = "kubepods-poda.slice";
    scope.pids = {::getpid()};
    fake_.start_scope(scope);
    pods->remove(ida);
    EXPECT_TRUE(fake_.unit("kubepods-poda.slice")) << "b still has its scopes there";
    EXPECT_TRUE(fake_.unit("crisd-b.scope"));
    fake_.stop_unit("crisd-b.scope");
    pods->remove(idb);

    // Nor while a nested slice is in it.
    auto n = host_pod("n");
    n.cgroup_parent = "kubepods-podn.slice";
    const auto idn = pods->run(n);
    EXPECT_TRUE(pods->status(idn).slice_owned);
    fake_.ensure_slice("kubepods-podn-inner.slice");
    pods->remove(idn);
    EXPECT_TRUE(fake_.unit("kubepods-podn.slice"));

    // A slice that was loaded before the pod (the kubelet's) is never stopped.
    ASSERT_TRUE(fake_.ensure_slice("kubepods-podk.slice"));  // made by someone else
    auto k = host_pod("k");
    k.cgroup_parent = "kubepods-podk.slice";
    const auto idk = pods->run(k);
    EXPECT_FALSE(pods->status(idk).slice_owned);
    pods->remove(idk);
    EXPECT_TRUE(fake_.unit("kubepods-podk.slice"));
}

TEST_F(PodManagerTest, RecordsSurviveARestart) {
    std::string id;
    {
        auto pods = manager();
        id = pods->run(host_pod("a"));
        pods->stop(pods->run(host_pod("b")));
    }
    auto again = manager();
    again->load();
    EXPECT_EQ(again->count(), 2u);
    EXPECT_EQ(again->status(id).state, PodState::Ready);
    EXPECT_EQ(again->list({"", PodState::NotReady, {}}).size(), 1u);
    EXPECT_THROW(again->run(host_pod("a")), Error);  // the name is still held
    again->remove(id);
    EXPECT_EQ(again->count(), 1u);
}

TEST_F(PodManagerTest, APodWhoseNamespacesAreGoneIsNotReadyAfterARestart) {
    std::string id;
    {
        auto pods = manager();
        id = pods->run(host_pod("a"));
    }
    // As after a reboot: the record names a network namespace that is gone.
    const std::string path = dir_ + "/root/pods/" + id + ".json";
    auto rec = record_from_json(nlohmann::json::parse(std::ifstream(path)));
    rec.netns = dir_ + "/run/ns/" + id + "/net";
    std::ofstream(path) << to_json(rec).dump();
    auto again = manager();
    again->load();
    EXPECT_EQ(again->status(id).state, PodState::NotReady);
    again->remove(id);
    EXPECT_EQ(again->count(), 0u);
}

TEST_F(PodManagerTest, APodWhoseInfraContainerIsGoneIsNotReadyAfterARestart) {
    std::string id;
    {
        auto pods = manager();
        id = pods->run(host_pod("a"));
    }
    // The record of a PID-sharing pod whose crisd-pause and conmon are gone.
    const std::string path = dir_ + "/root/pods/" + id + ".json";
    auto rec = record_from_json(nlohmann::json::parse(std::ifstream(path)));
    rec.config.pid = NamespaceMode::Pod;
    rec.infra = {id, rec.run_dir + "/infra", "/bin/sh", dir_ + "/run/runc", 999999, 999998, 1};
    std::filesystem::create_directories(rec.infra.bundle);
    std::ofstream(path) << to_json(rec).dump();
    auto again = manager();
    again->load();
    EXPECT_EQ(again->status(id).state, PodState::NotReady);
    again->remove(id);  // removes the infra container's scopes and bundle too
    EXPECT_EQ(again->count(), 0u);
    EXPECT_FALSE(std::filesystem::exists(rec.run_dir));
    const auto calls = fake_.calls();
    EXPECT_NE(std::find(calls.begin(), calls.end(), "stop_unit crisd-" + id + ".scope"), calls.end());
    EXPECT_NE(std::find(calls.begin(), calls.end(), "stop_unit crisd-conmon-" + id + ".scope"), calls.end());
}

TEST_F(PodManagerTest, AnUnfinishedCreationIsUndoneAtStartup) {
    // As if crisd died in the middle of RunPodSandbox.
    const auto [rec, path] = interrupted("a");
    std::ofstream(path) << to_json(rec).dump();
    auto again = manager();
    again->load();
    EXPECT_EQ(again->count(), 0u);
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(rec.run_dir));
    again->remove(again->run(host_pod("a")));  // the name is free
}

// crisd killed between the mounts of RunPodSandbox and its next save: an
// older crisd left records that name none of them. The namespace files and
// the shm tmpfs are still undone at startup (mounted here in a private mount
// namespace, so nothing reaches the host), and so are paths a record names
// but that were never made.
TEST_F(PodManagerTest, AnUnfinishedCreationsMountsAreUndoneWhateverItsRecordSays) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mounts)";
    static bool in_private_ns = false;
    if (!in_private_ns) {
        if (::unshare(CLONE_NEWNS) != 0) GTEST_SKIP() << "cannot unshare the mount namespace";
        ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
        in_private_ns = true;
    }
    auto [rec, path] = interrupted("a");
    rec.ns_dir = dir_ + "/run/ns/" + rec.id;
    std::filesystem::create_directories(rec.ns_dir);
    for (const char* kind : {"net", "uts"}) {  // pinned as create_namespaces pins them
        const std::string file = rec.ns_dir + "/" + kind;
        std::ofstream(file).flush();
        ASSERT_EQ(::mount(("/proc/self/ns/" + std::string(kind)).c_str(), file.c_str(), nullptr, MS_BIND, nullptr), 0)
            << std::strerror(errno);
    }
    std::ofstream(rec.ns_dir + "/ipc").flush();  // made, never mounted
    const std::string shm = rec.run_dir + "/shm";
    std::filesystem::create_directories(shm);
    ASSERT_EQ(::mount("shm", shm.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
    std::ofstream(shm + "/segment") << "x";
    std::ofstream(path) << to_json(rec).dump();  // names no namespace and no shm
    auto again = manager();
    again->load();
    EXPECT_EQ(again->count(), 0u);
    EXPECT_FALSE(std::filesystem::exists(path)) << "the record stays when the undo fails";
    EXPECT_FALSE(std::filesystem::exists(rec.ns_dir));
    EXPECT_FALSE(std::filesystem::exists(rec.run_dir));
    again->remove(again->run(host_pod("a")));  // the name is free

    // A record that names namespaces and shm that were never made.
    auto [rec_b, path_b] = interrupted("b");
    rec = rec_b;
    rec.ns_dir = dir_ + "/run/ns/" + rec.id;
    rec.netns = rec.ns_dir + "/net";
    rec.ipcns = rec.ns_dir + "/ipc";
    rec.shm = rec.run_dir + "/shm";
    std::ofstream(path_b) << to_json(rec).dump();
    auto third = manager();
    third->load();
    EXPECT_EQ(third->count(), 0u);
    EXPECT_FALSE(std::filesystem::exists(path_b));
    EXPECT_FALSE(std::filesystem::exists(rec.run_dir));
}

TEST_F(PodManagerTest, HooksForContainers) {
    auto pods = manager();
    std::vector<std::string> calls;
    bool fail_stop = false;
    pods->set_hooks({[&](const PodRecord& r) {
                         calls.push_back("stop " + r.config.metadata.name);
                         if (fail_stop) throw Error(Code::DeadlineExceeded, "container did not stop");
                     },
                     [&](const PodRecord& r) { calls.push_back("remove " + r.config.metadata.name); }});
    const auto id = pods->run(host_pod("a"));
    bool ran = false;
    pods->with_ready_pod(id, [&](const PodRecord& r) { ran = r.id == id; });
    EXPECT_TRUE(ran);
    fail_stop = true;
    try {
        pods->stop(id);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DeadlineExceeded);
    }
    EXPECT_EQ(pods->status(id).state, PodState::Ready) << "a failed stop leaves the pod as it was";
    fail_stop = false;
    pods->stop(id);
    try {
        pods->with_ready_pod(id, [](const PodRecord&) {});
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::FailedPrecondition);
    }
    pods->remove(id);
    EXPECT_EQ(calls, (std::vector<std::string>{"stop a", "stop a", "stop a", "remove a"}));
    try {
        pods->with_ready_pod(id, [](const PodRecord&) {});
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
    }
}

TEST_F(PodManagerTest, WaitingForABusyPodEndsWithTheCaller) {
    auto pods = manager();
    const auto id = pods->run(host_pod("a"));
    std::promise<void> inside, leave;
    auto holder = std::async(std::launch::async, [&] {
        pods->with_ready_pod(id, [&](const PodRecord&) {
            inside.set_value();
            leave.get_future().wait();
        });
    });
    inside.get_future().wait();
    Caller caller;
    caller.deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(300);
    try {
        pods->with_ready_pod(id, [](const PodRecord&) { ADD_FAILURE() << "ran while the pod was held"; }, caller);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DeadlineExceeded) << e.what();
    }
    leave.set_value();
    holder.get();
    bool ran = false;
    pods->with_ready_pod(id, [&](const PodRecord&) { ran = true; }, caller);  // free: no wait, no deadline check
    EXPECT_TRUE(ran);
    pods->remove(id);
}

TEST_F(PodManagerTest, BadInputIsRefusedBeforeAnythingIsMade) {
    auto pods = manager();
    auto c = host_pod("a");
    c.cgroup_parent = "/kubepods/pod1";
    EXPECT_THROW(pods->run(c), Error);
    c = host_pod("a");
    c.sysctls = {{"net.ipv4.ip_forward", "1"}};  // host network
    EXPECT_THROW(pods->run(c), Error);
    c = host_pod("a");
    c.runtime_handler = "nope";
    EXPECT_THROW(pods->run(c), Error);
    c = host_pod("");
    EXPECT_THROW(pods->run(c), Error);
    c = host_pod("a");
    c.hostname = std::string(65, 'h');
    EXPECT_THROW(pods->run(c), Error);
    EXPECT_EQ(pods->count(), 0u);
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/root/pods"));
}

TEST_F(PodManagerTest, FailedSliceLeavesNothing) {
    auto pods = manager();
    fake_.fail_next("ensure_slice", Error(Code::Unavailable, "no system bus"));
    auto c = host_pod("a");
    c.cgroup_parent = "kubepods-poda.slice";
    try {
        pods->run(c);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::Unavailable);
        EXPECT_NE(std::string(e.what()).find("kubepods-poda.slice"), std::string::npos) << e.what();
    }
    EXPECT_EQ(pods->count(), 0u);
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/root/pods"));
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/run/pods"));
    pods->remove(pods->run(c));  // the name was released
}

TEST_F(PodManagerTest, EventsAndChangeNotifications) {
    auto pods = manager();
    std::atomic<int> changes{0};
    pods->set_on_change([&] { ++changes; });
    auto events = pods->subscribe();
    const auto id = pods->run(host_pod("a"));
    pods->remove(id);
    std::vector<PodEvent::Type> types;
    while (auto e = events->next(std::chrono::milliseconds(10))) {
        EXPECT_EQ(e->pod.id, id);
        types.push_back(e->type);
    }
    EXPECT_EQ(types, (std::vector<PodEvent::Type>{PodEvent::Type::Created, PodEvent::Type::Started,
                                                  PodEvent::Type::Stopped, PodEvent::Type::Deleted}));
    EXPECT_GE(changes.load(), 3);
}

TEST(PodRecord, InfraRoundTripsAndOldRecordsHaveNone) {
    auto r = sample();
    r.config.pid = NamespaceMode::Pod;
    r.infra = {r.id, r.run_dir + "/infra", "/usr/sbin/runc", "/run/runc", 4321, 4320, 99};
    const auto back = record_from_json(nlohmann::json::parse(to_json(r).dump()));
    EXPECT_EQ(back.infra.id, r.id);
    EXPECT_EQ(back.infra.bundle, r.run_dir + "/infra");
    EXPECT_EQ(back.infra.pid, 4321);
    EXPECT_EQ(back.infra.monitor_pid, 4320);
    EXPECT_EQ(back.infra.runtime_root, "/run/runc");
    EXPECT_EQ(back.infra.started_at, 99);
    EXPECT_EQ(back.infra.pid_namespace(), "/proc/4321/ns/pid");
    auto j = to_json(sample());
    j.erase("infra");  // a record written before infra containers existed
    const auto old = record_from_json(j);
    EXPECT_FALSE(old.infra.present());
    EXPECT_EQ(old.infra.pid_namespace(), "");
}

TEST(InfraSpec, MinimalAndUnprivileged) {
    auto pod = sample();
    pod.infra.id = pod.id;
    pod.infra.bundle = pod.run_dir + "/infra";
    const auto spec = infra_spec(pod, "/usr/libexec/crisd/crisd-pause");
    const auto& p = spec["process"];
    EXPECT_EQ(p["args"], nlohmann::json::array({"/pause"}));
    EXPECT_EQ(p["user"]["uid"], 65535);
    EXPECT_EQ(p["user"]["gid"], 65535);
    EXPECT_EQ(p["noNewPrivileges"], true);
    for (const char* set : {"bounding", "effective", "permitted", "inheritable", "ambient"})
        EXPECT_TRUE(p["capabilities"][set].empty()) << set;
    EXPECT_EQ(spec["root"]["path"], pod.run_dir + "/infra/rootfs");
    EXPECT_EQ(spec["root"]["readonly"], true);
    bool pause_mount = false;
    for (const auto& m : spec["mounts"]) {
        EXPECT_NE(m["type"], "cgroup");
        if (m["destination"] != "/pause") continue;
        pause_mount = true;
        EXPECT_EQ(m["source"], "/usr/libexec/crisd/crisd-pause");
        EXPECT_EQ(m["type"], "bind");
        const auto opts = m["options"].get<std::vector<std::string>>();
        EXPECT_NE(std::find(opts.begin(), opts.end(), "ro"), opts.end());
    }
    EXPECT_TRUE(pause_mount) << spec["mounts"].dump();
    const auto& ns = spec["linux"]["namespaces"];
    auto find_ns = [&](const std::string& type) -> nlohmann::json {
        for (const auto& n : ns)
            if (n["type"] == type) return n;
        return nullptr;
    };
    EXPECT_FALSE(find_ns("pid").contains("path")) << "a new PID namespace";
    EXPECT_EQ(find_ns("network")["path"], pod.netns);
    EXPECT_EQ(find_ns("ipc")["path"], pod.ipcns);
    EXPECT_EQ(find_ns("uts")["path"], pod.utsns);
    EXPECT_FALSE(find_ns("mount").is_null());
    EXPECT_EQ(spec["linux"]["cgroupsPath"], "kubepods-pod1.slice:crisd:" + pod.id);
    EXPECT_FALSE(spec["linux"]["maskedPaths"].empty());
    EXPECT_FALSE(spec["linux"]["readonlyPaths"].empty());
    EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.container-type"], "sandbox");
    // A host-network pod: no network or UTS entry.
    pod.netns = pod.utsns = "";
    const auto host = infra_spec(pod, "/p");
    for (const auto& n : host["linux"]["namespaces"]) {
        EXPECT_NE(n["type"], "network");
        EXPECT_NE(n["type"], "uts");
    }
}

// A pod whose infra container fails to start: the runtime's words in a clear
// error, nothing left (record, directories, exit file, conmon's scope), the
// name free again.
TEST_F(PodManagerTest, FailedInfraStartLeavesNothing) {
    const std::string text = "runc create failed: the test says no";
    fake_conmon("printf 'error -1 " + std::to_string(text.size()) + "\\n%s' '" + text + "' >&3");
    auto pods = manager();
    auto c = host_pod("shared");
    c.pid = NamespaceMode::Pod;
    try {
        pods->run(c);
        FAIL() << "the infra container cannot start";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("infra container"), std::string::npos) << e.what();
    }
    EXPECT_EQ(pods->count(), 0u);
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/root/pods"));
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/run/pods"));
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/run/exits"));
    // conmon was placed in its scope, which was stopped again.
    const auto calls = fake_.calls();
    const auto placed = std::find_if(calls.begin(), calls.end(), [](const std::string& call) {
        return call.rfind("start_scope crisd-conmon-", 0) == 0;
    });
    ASSERT_NE(placed, calls.end());
    const auto unit = placed->substr(std::string("start_scope ").size());
    EXPECT_NE(std::find(calls.begin(), calls.end(), "stop_unit " + unit), calls.end());
    const auto u = fake_.unit(unit);
    EXPECT_TRUE(!u || u->active_state != "active");

    // A handler that cannot run is refused before anything is made.
    c.runtime_handler = "crun";  // no crun binary on the search path of this test
    try {
        pods->run(c);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::FailedPrecondition) << e.what();
    }
    EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/root/pods"));

    // The name is free again.
    c = host_pod("shared");
    pods->remove(pods->run(c));
}
