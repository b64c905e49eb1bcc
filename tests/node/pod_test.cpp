// Pod sandboxes through the CRI against the node's crisd: namespaces held
// without an infra process, files for containers, CNI with the shipped
// bridge config, slices, restart recovery and cleanup.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "cri_client.hpp"
#include "node_test.hpp"

using namespace crisd::node;
using crisd::test::CallError;
using crisd::test::CriClient;
namespace v1 = ::runtime::v1;
using namespace std::chrono_literals;

namespace {

const std::string kNsDir = "/run/crisd/ns/";
const std::string kPodsRun = "/run/crisd/pods/";
const std::string kRecords = "/var/lib/crisd/pods/";
const std::string kCniCache = "/var/lib/crisd/network/results/";

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

v1::PodSandboxConfig pod_config(const std::string& name) {
    v1::PodSandboxConfig c;
    auto* md = c.mutable_metadata();
    md->set_name(name);
    md->set_namespace_("pod-test");
    md->set_uid("uid-" + name);
    md->set_attempt(0);
    c.set_hostname(name);
    (*c.mutable_labels())["test"] = "pod";
    (*c.mutable_labels())["name"] = name;
    auto* ns = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(v1::POD);
    ns->set_pid(v1::CONTAINER);
    ns->set_ipc(v1::POD);
    return c;
}

std::string run(CriClient& c, const v1::PodSandboxConfig& config) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    return c.call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
}

grpc::Status try_run(CriClient& c, const v1::PodSandboxConfig& config, std::string* id = nullptr) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    v1::RunPodSandboxResponse resp;
    const auto st = c.try_call(&v1::RuntimeService::Stub::RunPodSandbox, req, &resp);
    if (id) *id = resp.pod_sandbox_id();
    return st;
}

void stop(CriClient& c, const std::string& id) {
    v1::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    c.call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", req);
}

void remove(CriClient& c, const std::string& id) {
    v1::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    c.call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", req);
}

v1::PodSandboxStatusResponse status(CriClient& c, const std::string& id, bool verbose = false) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(verbose);
    return c.call(&v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", req);
}

std::vector<v1::PodSandbox> list(CriClient& c, const v1::PodSandboxFilter* filter = nullptr) {
    v1::ListPodSandboxRequest req;
    if (filter) *req.mutable_filter() = *filter;
    const auto resp = c.call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", req);
    return {resp.items().begin(), resp.items().end()};
}

std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every pod the test made goes, whatever the test did.
class Pods : public ::testing::Test {
protected:
    void TearDown() override {
        CriClient c(kCriSocket);
        try {
            for (const auto& p : list(c))
                if (p.labels().count("test")) remove(c, p.id());
        } catch (const CallError& e) {
            ADD_FAILURE() << "cleanup: " << e.what();
        }
    }
    CriClient client_{kCriSocket};

    // The node's first CNI config: a bridge `bridge` on `subnet`, then the
    // test's own plugin /opt/cni/bin/<plugin> running `script`; the config
    // watch has picked it up when this returns. The test removes both.
    static void use_test_plugin(const std::string& plugin, const std::string& script, const std::string& bridge,
                                const std::string& subnet) {
        must("mkdir -p /opt/cni/bin");
        std::ofstream("/opt/cni/bin/" + plugin) << script;
        must("chmod +x /opt/cni/bin/" + plugin);
        const std::string conf = "/etc/cni/net.d/00-" + plugin + ".conflist";
        std::ofstream(conf + ".tmp") << R"({"cniVersion":"1.0.0","name":")" << plugin << R"(","plugins":[
              {"type":"bridge","bridge":")" << bridge << R"(","ipam":{"type":"host-local","ranges":[[{"subnet":")"
                                     << subnet << R"("}]]}},
              {"type":")" << plugin << R"("}]})";
        must("mv " + conf + ".tmp " + conf);
        ::usleep(500000);
    }
};

// After every pod is gone: no mount, namespace file, CNI result or address left.
void expect_nothing_left() {
    EXPECT_EQ(sh("findmnt -rn -o TARGET | grep -c '^/run/crisd/'").out, "0\n")
        << must("findmnt -rn -o TARGET | grep '^/run/crisd/'");
    EXPECT_EQ(must("ls -A " + kNsDir), "");
    EXPECT_EQ(must("ls -A " + kPodsRun), "");
    EXPECT_EQ(must("ls -A " + kRecords), "");
    EXPECT_EQ(sh("ls -A " + kCniCache + " 2>/dev/null").out, "");
    EXPECT_EQ(sh("ls /var/lib/cni/networks/crisd/ 2>/dev/null | grep -c '^10\\.85\\.'").out, "0\n");
    EXPECT_EQ(sh("ip netns list").out, "");
}

void restart_crisd_with_kill9() {
    const auto pid = unit_property("crisd.service", "MainPID");
    must("systemctl kill -s KILL crisd.service");
    for (int i = 0; i < 100 && unit_property("crisd.service", "MainPID") == pid; ++i) ::usleep(50000);
    sh("systemctl reset-failed crisd.service");
    // The next connection starts it again (crisd.socket).
}

}  // namespace

TEST_F(Pods, LifecycleIsIdempotentAndAnsweredFromMemory) {
    const auto id = run(client_, pod_config("life"));
    ASSERT_EQ(id.size(), 64u);
    auto st = status(client_, id, true);
    EXPECT_EQ(st.status().id(), id);
    EXPECT_EQ(st.status().state(), v1::SANDBOX_READY);
    EXPECT_EQ(st.status().metadata().name(), "life");
    EXPECT_EQ(st.status().metadata().namespace_(), "pod-test");
    EXPECT_EQ(st.status().runtime_handler(), "runc");
    EXPECT_GT(st.status().created_at(), 0);
    EXPECT_EQ(st.status().network().ip().rfind("10.85.", 0), 0u) << st.status().network().ip();
    EXPECT_EQ(st.status().linux().namespaces().options().pid(), v1::CONTAINER);
    ASSERT_EQ(st.info().count("info"), 1u);
    EXPECT_NE(st.info().at("info").find(kNsDir + id + "/net"), std::string::npos) << st.info().at("info");
    for (const char* ns : {"net", "ipc", "uts"})
        EXPECT_EQ(trim(must("findmnt -rn -o FSTYPE " + kNsDir + id + "/" + ns)), "nsfs") << ns;
    EXPECT_EQ(trim(must("busctl get-property io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1 Pods")),
              "u 1");

    // Filters: id prefix, state, labels.
    v1::PodSandboxFilter f;
    f.set_id(id.substr(0, 8));
    EXPECT_EQ(list(client_, &f).size(), 1u);
    f.Clear();
    (*f.mutable_label_selector())["name"] = "life";
    EXPECT_EQ(list(client_, &f).size(), 1u);
    (*f.mutable_label_selector())["name"] = "other";
    EXPECT_EQ(list(client_, &f).size(), 0u);
    f.Clear();
    f.mutable_state()->set_state(v1::SANDBOX_NOTREADY);
    EXPECT_EQ(list(client_, &f).size(), 0u);

    stop(client_, id);
    stop(client_, id);
    st = status(client_, id);
    EXPECT_EQ(st.status().state(), v1::SANDBOX_NOTREADY);
    EXPECT_EQ(st.status().network().ip(), "");
    EXPECT_EQ(list(client_, &f).size(), 1u);
    EXPECT_EQ(sh("ls " + kCniCache + id + ".json").exit_code, 2) << "DEL ran at stop";

    remove(client_, id);
    remove(client_, id);  // gone already: fine, as the CRI asks
    try {
        status(client_, id);
        ADD_FAILURE() << "status of a removed pod";
    } catch (const CallError& e) {
        EXPECT_EQ(e.code(), grpc::StatusCode::NOT_FOUND);
    }
    EXPECT_TRUE(list(client_).empty());
    EXPECT_EQ(trim(must("busctl get-property io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1 Pods")),
              "u 0");
    expect_nothing_left();
}

TEST_F(Pods, RemoveStopsARunningPodFirst) {
    const auto id = run(client_, pod_config("rm-running"));
    remove(client_, id);
    EXPECT_TRUE(list(client_).empty());
    expect_nothing_left();
}

TEST_F(Pods, UnknownIdsAreNotFoundForStatusOnly) {
    const std::string unknown(64, 'f');
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(unknown);
    v1::PodSandboxStatusResponse resp;
    const auto st = client_.try_call(&v1::RuntimeService::Stub::PodSandboxStatus, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(st.error_message().find(unknown), std::string::npos) << st.error_message();
    // Stop and Remove of a pod that is gone succeed: api.proto says they must
    // not fail once everything is reclaimed (the kubelet retries them).
    stop(client_, unknown);
    remove(client_, unknown);
    const auto id = run(client_, pod_config("gone"));
    remove(client_, id);
    stop(client_, id);
}

TEST_F(Pods, HostNetworkPodNeverTouchesCni) {
    auto c = pod_config("hostnet");
    c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(v1::NODE);
    const auto id = run(client_, c);
    const auto st = status(client_, id);
    EXPECT_EQ(st.status().state(), v1::SANDBOX_READY);
    EXPECT_EQ(st.status().network().ip(), "");
    EXPECT_EQ(st.status().linux().namespaces().options().network(), v1::NODE);
    EXPECT_FALSE(access((kNsDir + id + "/net").c_str(), F_OK) == 0);
    EXPECT_FALSE(access((kNsDir + id + "/uts").c_str(), F_OK) == 0) << "host network keeps the node's UTS";
    EXPECT_TRUE(access((kNsDir + id + "/ipc").c_str(), F_OK) == 0);
    EXPECT_EQ(sh("ls " + kCniCache + id + ".json").exit_code, 2);
    EXPECT_EQ(read(kPodsRun + id + "/hostname"), must("hostname"));
    remove(client_, id);
}

TEST_F(Pods, HostIpcPodHasNoIpcNamespaceAndNoShmMount) {
    auto c = pod_config("hostipc");
    c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_ipc(v1::NODE);
    const auto id = run(client_, c);
    EXPECT_FALSE(access((kNsDir + id + "/ipc").c_str(), F_OK) == 0);
    EXPECT_TRUE(access((kNsDir + id + "/net").c_str(), F_OK) == 0);
    EXPECT_NE(sh("findmnt " + kPodsRun + id + "/shm").exit_code, 0);
    EXPECT_EQ(status(client_, id).status().linux().namespaces().options().ipc(), v1::NODE);
    remove(client_, id);
    expect_nothing_left();
}

TEST_F(Pods, StopAndRemoveCopeWithANamespaceThatVanished) {
    const auto id = run(client_, pod_config("vanished"));
    const auto ip = status(client_, id).status().network().ip();
    // Someone unmounted the pod's network namespace behind crisd's back.
    must("umount " + kNsDir + id + "/net");
    stop(client_, id);
    remove(client_, id);
    EXPECT_EQ(sh("ls /var/lib/cni/networks/crisd/ | grep -c '^" + ip + "$'").out, "0\n");
    expect_nothing_left();
}

TEST_F(Pods, FilesNamespacesSysctlsAndShm) {
    auto c = pod_config("files");
    c.set_hostname("files-host");
    auto* dns = c.mutable_dns_config();
    dns->add_servers("10.96.0.10");
    dns->add_servers("10.96.0.11");
    dns->add_searches("pod-test.svc.cluster.local");
    dns->add_searches("cluster.local");
    dns->add_options("ndots:5");
    (*c.mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "42";
    (*c.mutable_linux()->mutable_sysctls())["kernel.shmmni"] = "1234";
    const auto id = run(client_, c);
    const auto ip = status(client_, id).status().network().ip();
    const std::string dir = kPodsRun + id;
    EXPECT_EQ(read(dir + "/resolv.conf"),
              "search pod-test.svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
              "nameserver 10.96.0.11\noptions ndots:5\n");
    const auto hosts = read(dir + "/hosts");
    EXPECT_NE(hosts.find("127.0.0.1\tlocalhost"), std::string::npos) << hosts;
    EXPECT_NE(hosts.find(ip + "\tfiles-host"), std::string::npos) << hosts;
    EXPECT_EQ(read(dir + "/hostname"), "files-host\n");
    const std::string ns = kNsDir + id;
    EXPECT_EQ(must("nsenter --uts=" + ns + "/uts hostname"), "files-host\n");
    EXPECT_EQ(must("nsenter --net=" + ns + "/net cat /proc/sys/net/ipv4/ip_unprivileged_port_start"), "42\n");
    EXPECT_NE(must("cat /proc/sys/net/ipv4/ip_unprivileged_port_start"), "42\n") << "the node is untouched";
    EXPECT_EQ(must("nsenter --ipc=" + ns + "/ipc cat /proc/sys/kernel/shmmni"), "1234\n");
    EXPECT_NE(must("cat /proc/sys/kernel/shmmni"), "1234\n");
    EXPECT_NE(must("nsenter --net=" + ns + "/net ip -o addr show dev eth0").find(ip), std::string::npos);
    const auto shm = must("findmnt -rn -o FSTYPE,OPTIONS " + dir + "/shm");
    EXPECT_EQ(shm.rfind("tmpfs ", 0), 0u) << shm;
    EXPECT_NE(shm.find("size=65536k"), std::string::npos) << shm;
    EXPECT_NE(shm.find("nosuid"), std::string::npos) << shm;
    remove(client_, id);
    expect_nothing_left();
}

TEST_F(Pods, BadSysctlsAreRefusedAndLeaveNothing) {
    auto c = pod_config("sysctl-bad");
    (*c.mutable_linux()->mutable_sysctls())["kernel.panic"] = "1";
    auto st = try_run(client_, c);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("not namespaced"), std::string::npos) << st.error_message();
    c = pod_config("sysctl-bad");
    (*c.mutable_linux()->mutable_sysctls())["net.ipv4.no_such_sysctl"] = "1";
    st = try_run(client_, c);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("does not exist"), std::string::npos) << st.error_message();
    c = pod_config("sysctl-bad");
    (*c.mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "not-a-number";
    st = try_run(client_, c);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_TRUE(list(client_).empty());
    expect_nothing_left();
}

TEST_F(Pods, TwoPodsReachEachOther) {
    const auto a = run(client_, pod_config("ping-a"));
    const auto b = run(client_, pod_config("ping-b"));
    const auto ip_a = status(client_, a).status().network().ip();
    const auto ip_b = status(client_, b).status().network().ip();
    ASSERT_FALSE(ip_a.empty());
    ASSERT_NE(ip_a, ip_b);
    must("nsenter --net=" + kNsDir + a + "/net busybox ping -c 1 -W 5 " + ip_b);
    must("nsenter --net=" + kNsDir + b + "/net busybox ping -c 1 -W 5 " + ip_a);
}

TEST_F(Pods, HostPortReachesAServerInThePod) {
    auto c = pod_config("web");
    auto* pm = c.add_port_mappings();
    pm->set_protocol(v1::TCP);
    pm->set_container_port(80);
    pm->set_host_port(18081);
    const auto id = run(client_, c);
    must("mkdir -p /run/pod-www && echo hello-from-crisd-pod > /run/pod-www/index.html");
    must("systemd-run --unit=pod-test-httpd --quiet nsenter --net=" + kNsDir + id +
         "/net busybox httpd -f -p 80 -h /run/pod-www");
    must("for i in $(seq 50); do nsenter --net=" + kNsDir + id +
         "/net busybox wget -q -O /dev/null http://127.0.0.1/ && break; sleep 0.1; done");
    const auto gw = trim(must("ip -4 -o addr show dev crisd0 | awk '{print $4}' | cut -d/ -f1"));
    EXPECT_EQ(must("busybox wget -q -O - http://" + gw + ":18081/"), "hello-from-crisd-pod\n");
    sh("systemctl stop pod-test-httpd");
    sh("rm -rf /run/pod-www");
    remove(client_, id);
    EXPECT_EQ(sh("iptables -t nat -S | grep -c 18081").out, "0\n") << "portmap rules removed";
}

TEST_F(Pods, NameInUseIsAlreadyExistsNamingTheHolder) {
    const auto id = run(client_, pod_config("dup"));
    const auto st = try_run(client_, pod_config("dup"));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_NE(st.error_message().find(id), std::string::npos) << st.error_message();
    // Another attempt is another name.
    auto next = pod_config("dup");
    next.mutable_metadata()->set_attempt(1);
    const auto id2 = run(client_, next);
    EXPECT_NE(id2, id);
    remove(client_, id);
    remove(client_, id2);
    // Removed: the name is free again.
    remove(client_, run(client_, pod_config("dup")));
}

TEST_F(Pods, ARetryAfterTheClientGaveUpGetsTheFirstPod) {
    // The kubelet's RunPodSandbox times out on its side while crisd still
    // works (CNI ADD alone takes longer than 1 ms); its retry gets that pod.
    client_.version();  // connected, so that the request itself goes out
    {
        auto ctx = client_.context();
        ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2));
        v1::RunPodSandboxRequest req;
        *req.mutable_config() = pod_config("retry");
        v1::RunPodSandboxResponse resp;
        const auto first = client_.runtime().RunPodSandbox(ctx.get(), req, &resp);
        EXPECT_EQ(first.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << first.error_message();
    }
    std::string id;
    const auto again = try_run(client_, pod_config("retry"), &id);
    ASSERT_TRUE(again.ok()) << again.error_message();
    v1::PodSandboxFilter f;
    (*f.mutable_label_selector())["name"] = "retry";
    const auto pods = list(client_, &f);
    ASSERT_EQ(pods.size(), 1u);
    EXPECT_EQ(pods[0].id(), id);
    const std::string line = "journalctl -u crisd.service --no-pager | grep -c 'pod-test/retry gets pod " + id + "'";
    EXPECT_EQ(sh("for i in $(seq 30); do " + line + " >/dev/null && break; sleep 0.1; done; " + line).out, "1\n")
        << "the retry got the first request's pod";
    // Two requests at once for one name get one pod.
    std::string a, b;
    std::thread t([&] {
        CriClient other(kCriSocket);
        EXPECT_TRUE(try_run(other, pod_config("twice"), &a).ok());
    });
    const auto st = try_run(client_, pod_config("twice"), &b);
    t.join();
    if (st.ok()) {
        EXPECT_EQ(a, b);
    } else {  // the second arrived after the first had answered
        EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS) << st.error_message();
        EXPECT_NE(st.error_message().find(a), std::string::npos);
    }
}

// A CNI ADD that hangs: each kubelet retry of RunPodSandbox waits for the
// creation in flight only until its own deadline (DEADLINE_EXCEEDED from
// crisd, not a gRPC thread held for as long as the ADD takes), and once the
// ADD is done a retry gets that pod.
TEST_F(Pods, RetriesOfAHungCreationGiveUpAtTheirDeadline) {
    must("rm -f /run/crisd-test-release");
    use_test_plugin("crisd-test-slow",
                    "#!/usr/bin/python3\nimport json, os, sys, time\nconf = json.load(sys.stdin)\n"
                    "if os.environ.get('CNI_COMMAND') == 'ADD':\n"
                    "    for _ in range(300):\n"
                    "        if os.path.exists('/run/crisd-test-release'): break\n"
                    "        time.sleep(0.1)\n"
                    "print(json.dumps(conf.get('prevResult', {'cniVersion': conf['cniVersion']})))\n",
                    "cnibr8", "10.87.0.0/24");
    client_.version();
    const auto with_deadline = [&](std::chrono::milliseconds d, std::string* id = nullptr) {
        auto ctx = client_.context();
        ctx->set_deadline(std::chrono::system_clock::now() + d);
        v1::RunPodSandboxRequest req;
        *req.mutable_config() = pod_config("hung");
        v1::RunPodSandboxResponse resp;
        const auto st = client_.runtime().RunPodSandbox(ctx.get(), req, &resp);
        if (id) *id = resp.pod_sandbox_id();
        return st;
    };
    EXPECT_EQ(with_deadline(1000ms).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);  // the first, in CNI ADD
    const auto t = std::chrono::steady_clock::now();
    EXPECT_EQ(with_deadline(1500ms).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);  // a retry
    EXPECT_LT(std::chrono::steady_clock::now() - t, 3s);
    const std::string gave_up =
        "journalctl -u crisd.service --no-pager | grep -c 'pod-test_uid-hung_0\" that an earlier request is creating'";
    EXPECT_EQ(sh("for i in $(seq 30); do " + gave_up + " >/dev/null && break; sleep 0.1; done; " + gave_up).out,
              "1\n")
        << "crisd itself gave up waiting (not only the client)";
    must("touch /run/crisd-test-release");
    std::string id;
    const auto st = with_deadline(10000ms, &id);  // waits for the first, or gets its pod
    ASSERT_TRUE(st.ok()) << st.error_message();
    v1::PodSandboxFilter f;
    (*f.mutable_label_selector())["name"] = "hung";
    ASSERT_EQ(list(client_, &f).size(), 1u) << "one pod, made by the first request";
    EXPECT_EQ(list(client_, &f)[0].id(), id);
    remove(client_, id);
    must("rm -f /etc/cni/net.d/00-crisd-test-slow.conflist /opt/cni/bin/crisd-test-slow /run/crisd-test-release");
    sh("ip link delete cnibr8");
    expect_nothing_left();
    ::usleep(500000);
}

TEST_F(Pods, PodSliceComesFromCgroupParent) {
    auto c = pod_config("sliced");
    c.mutable_linux()->set_cgroup_parent("crisdtest-besteffort-podsliced.slice");
    const auto id = run(client_, c);
    EXPECT_TRUE(wait_unit_state("crisdtest-besteffort-podsliced.slice", "active", 5));
    EXPECT_TRUE(wait_unit_state("crisdtest-besteffort.slice", "active", 5));
    EXPECT_NE(status(client_, id, true).info().at("info").find("crisdtest-besteffort-podsliced.slice"),
              std::string::npos);
    auto bad = pod_config("sliced-bad");
    bad.mutable_linux()->set_cgroup_parent("/kubepods/besteffort/pod1");
    const auto st = try_run(client_, bad);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("systemd slice"), std::string::npos) << st.error_message();
    remove(client_, id);
    // crisd made the pod's slice (no kubelet here): its removal stops it.
    // The parents are shared by other pods and stay.
    EXPECT_TRUE(wait_unit_state("crisdtest-besteffort-podsliced.slice", "inactive", 5))
        << sh("systemctl status crisdtest-besteffort-podsliced.slice").out;
    EXPECT_TRUE(wait_unit_state("crisdtest-besteffort.slice", "active", 5));

    // A slice that was there before the pod is left alone, and so is what
    // else runs in it: one the kubelet made (a transient unit, as
    // libcontainer's systemd driver makes it) and one loaded only as the
    // implicit parent of another unit.
    ASSERT_EQ(sh("busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 "
                 "org.freedesktop.systemd1.Manager StartTransientUnit 'ssa(sv)a(sa(sv))' "
                 "crisdtest-besteffort-podkubelet.slice fail 1 Description s kubelet 0")
                  .exit_code,
              0);
    ASSERT_EQ(sh("systemd-run --quiet --unit=crisdtest-kubelet-made --slice=crisdtest-besteffort-podimplicit.slice "
                 "sleep infinity").exit_code,
              0);
    auto implicit = pod_config("implicit-slice");
    implicit.mutable_linux()->set_cgroup_parent("crisdtest-besteffort-podimplicit.slice");
    remove(client_, run(client_, implicit));
    EXPECT_TRUE(wait_unit_state("crisdtest-besteffort-podimplicit.slice", "active", 5));
    auto k = pod_config("kubelet-slice");
    k.mutable_linux()->set_cgroup_parent("crisdtest-besteffort-podkubelet.slice");
    const auto kid = run(client_, k);
    remove(client_, kid);
    EXPECT_TRUE(wait_unit_state("crisdtest-besteffort-podkubelet.slice", "active", 5));
    EXPECT_TRUE(wait_unit_state("crisdtest-kubelet-made.service", "active", 5));
    sh("systemctl stop crisdtest.slice");
}

TEST_F(Pods, StateSurvivesKill9AndCleanupStillWorks) {
    const auto ready = run(client_, pod_config("survivor"));
    const auto stopped = run(client_, pod_config("survivor-stopped"));
    stop(client_, stopped);
    const auto ip = status(client_, ready).status().network().ip();
    ASSERT_FALSE(ip.empty());
    restart_crisd_with_kill9();

    CriClient c(kCriSocket);
    const auto st = status(c, ready);
    EXPECT_EQ(st.status().state(), v1::SANDBOX_READY);
    EXPECT_EQ(st.status().network().ip(), ip);
    EXPECT_EQ(status(c, stopped).status().state(), v1::SANDBOX_NOTREADY);
    EXPECT_EQ(list(c).size(), 2u);
    // The namespace survived crisd; the network in it too.
    must("nsenter --net=" + kNsDir + ready + "/net busybox ping -c 1 -W 5 " + ip);
    EXPECT_EQ(try_run(c, pod_config("survivor")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
    // DEL with the cached result after the restart, then everything goes.
    stop(c, ready);
    EXPECT_EQ(sh("ls /var/lib/cni/networks/crisd/ | grep -c '^" + ip + "$'").out, "0\n");
    remove(c, ready);
    remove(c, stopped);
    expect_nothing_left();
}

TEST_F(Pods, BrokenCniPluginGivesAClearErrorAndLeavesNoHalfPod) {
    use_test_plugin("crisd-test-broken",
                    "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n"
                    "echo '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"broken on purpose\"}'\nexit 1\n",
                    "cnibr9", "10.86.0.0/24");
    const auto st = try_run(client_, pod_config("broken"));
    must("rm -f /etc/cni/net.d/00-crisd-test-broken.conflist /opt/cni/bin/crisd-test-broken");
    EXPECT_NE(st.error_code(), grpc::StatusCode::OK);
    EXPECT_NE(st.error_message().find("broken on purpose"), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("pod-test/broken"), std::string::npos) << st.error_message();
    EXPECT_TRUE(list(client_).empty());
    EXPECT_EQ(sh("ls /var/lib/cni/networks/broken/ 2>/dev/null | grep -c 10.86").out, "0\n");
    sh("ip link delete cnibr9");
    expect_nothing_left();
    ::usleep(500000);
    // The name is free and the shipped network works again.
    remove(client_, run(client_, pod_config("broken")));
}

TEST_F(Pods, ThirtyInParallelThenNothingLeft) {
    constexpr int kPods = 30;
    std::vector<std::string> ids(kPods);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int i = 0; i < kPods; ++i) {
        threads.emplace_back([&, i] {
            try {
                CriClient c(kCriSocket);
                ids[i] = run(c, pod_config("par-" + std::to_string(i)));
            } catch (const CallError& e) {
                ++failures;
                ADD_FAILURE() << e.what();
            }
        });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(failures.load(), 0);
    EXPECT_EQ(list(client_).size(), static_cast<size_t>(kPods));
    std::set<std::string> ips;
    for (const auto& id : ids) ips.insert(status(client_, id).status().network().ip());
    EXPECT_EQ(ips.size(), static_cast<size_t>(kPods)) << "every pod has its own address";
    threads.clear();
    for (int i = 0; i < kPods; ++i) {
        threads.emplace_back([&, i] {
            try {
                CriClient c(kCriSocket);
                remove(c, ids[i]);
            } catch (const CallError& e) {
                ADD_FAILURE() << e.what();
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_TRUE(list(client_).empty());
    expect_nothing_left();
}

TEST_F(Pods, EventsStreamForThePodLifecycle) {
    auto ctx = client_.context();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = client_.runtime().GetContainerEvents(ctx.get(), v1::GetEventsRequest());
    ::usleep(200000);  // subscribed
    const auto id = run(client_, pod_config("events"));
    remove(client_, id);
    std::vector<v1::ContainerEventType> types;
    v1::ContainerEventResponse e;
    while (types.size() < 4 && reader->Read(&e)) {
        if (e.container_id() != id) continue;
        EXPECT_EQ(e.pod_sandbox_status().id(), id);
        EXPECT_EQ(e.pod_sandbox_status().metadata().name(), "events");
        types.push_back(e.container_event_type());
    }
    ctx->TryCancel();
    EXPECT_EQ(types, (std::vector<v1::ContainerEventType>{v1::CONTAINER_CREATED_EVENT,
                                                          v1::CONTAINER_STARTED_EVENT,
                                                          v1::CONTAINER_STOPPED_EVENT,
                                                          v1::CONTAINER_DELETED_EVENT}));
}
