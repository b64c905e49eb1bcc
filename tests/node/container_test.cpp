// Containers through the CRI against the node's crisd, real runc and crun:
// lifecycle, output in the CRI log and the journal, exit codes and reasons,
// stop timeout, OOM, user and capabilities seen inside, limits in systemd and
// the cgroup files, crisd restart and kill -9, nothing left after removal.
#include <set>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cri_client.hpp"
#include "node_test.hpp"

using namespace crisd::node;
using crisd::test::CallError;
using crisd::test::CriClient;
namespace v1 = ::runtime::v1;
using namespace std::chrono_literals;

namespace {

const std::string kImage = "127.0.0.1:5000/busybox:latest";
const std::string kLogDir = "/var/log/crisd-container-test";

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(100ms);
    }
    return cond();
}

v1::PodSandboxConfig pod_config(const std::string& name) {
    v1::PodSandboxConfig c;
    auto* md = c.mutable_metadata();
    md->set_name(name);
    md->set_namespace_("container-test");
    md->set_uid("uid-" + name);
    c.set_hostname(name);
    c.set_log_directory(kLogDir + "/" + name);
    (*c.mutable_labels())["test"] = "container";
    auto* ns = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(v1::POD);
    ns->set_pid(v1::CONTAINER);
    ns->set_ipc(v1::POD);
    return c;
}

v1::ContainerConfig container_config(const std::string& name, const std::string& script) {
    v1::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_image()->set_image(kImage);
    c.add_command("sh");
    c.add_args("-c");
    c.add_args(script);
    c.set_log_path(name + ".log");
    (*c.mutable_labels())["ctr"] = name;
    return c;
}

class Containers : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        CriClient c(kCriSocket);
        v1::PullImageRequest req;
        req.mutable_image()->set_image(kImage);
        c.call(&v1::ImageService::Stub::PullImage, "PullImage", req);
    }
    void TearDown() override {
        try {
            v1::ListPodSandboxRequest req;
            const auto pods = client_->call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", req);
            for (const auto& p : pods.items())
                if (p.labels().count("test") && p.labels().at("test") == "container") {
                    v1::RemovePodSandboxRequest rm;
                    rm.set_pod_sandbox_id(p.id());
                    client_->call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm);
                }
        } catch (const CallError& e) {
            ADD_FAILURE() << "cleanup: " << e.what();
        }
        EXPECT_EQ(list().size(), 0u) << "removing the pods removes their containers";
        sh("rm -rf " + kLogDir);
    }

    std::string run_pod(const std::string& name, const std::string& handler = "") {
        v1::RunPodSandboxRequest req;
        *req.mutable_config() = pod_config(name);
        req.set_runtime_handler(handler);
        pod_config_ = req.config();
        return client_->call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
    }
    grpc::Status try_create(const std::string& pod, const v1::ContainerConfig& config, std::string* id = nullptr) {
        v1::CreateContainerRequest req;
        req.set_pod_sandbox_id(pod);
        *req.mutable_config() = config;
        *req.mutable_sandbox_config() = pod_config_;
        v1::CreateContainerResponse resp;
        const auto st = client_->try_call(&v1::RuntimeService::Stub::CreateContainer, req, &resp);
        if (id) *id = resp.container_id();
        return st;
    }
    std::string create(const std::string& pod, const v1::ContainerConfig& config) {
        std::string id;
        const auto st = try_create(pod, config, &id);
        EXPECT_TRUE(st.ok()) << st.error_message();
        return id;
    }
    void start(const std::string& id) {
        v1::StartContainerRequest req;
        req.set_container_id(id);
        client_->call(&v1::RuntimeService::Stub::StartContainer, "StartContainer", req);
    }
    void stop(const std::string& id, int timeout) {
        v1::StopContainerRequest req;
        req.set_container_id(id);
        req.set_timeout(timeout);
        client_->call(&v1::RuntimeService::Stub::StopContainer, "StopContainer", req);
    }
    void remove(const std::string& id) {
        v1::RemoveContainerRequest req;
        req.set_container_id(id);
        client_->call(&v1::RuntimeService::Stub::RemoveContainer, "RemoveContainer", req);
    }
    v1::ContainerStatus status(const std::string& id) {
        v1::ContainerStatusRequest req;
        req.set_container_id(id);
        return client_->call(&v1::RuntimeService::Stub::ContainerStatus, "ContainerStatus", req).status();
    }
    std::vector<v1::Container> list(const v1::ContainerFilter* f = nullptr) {
        v1::ListContainersRequest req;
        if (f) *req.mutable_filter() = *f;
        const auto resp = client_->call(&v1::RuntimeService::Stub::ListContainers, "ListContainers", req);
        return {resp.containers().begin(), resp.containers().end()};
    }
    v1::ExecSyncResponse exec(const std::string& id, const std::string& script) {
        v1::ExecSyncRequest req;
        req.set_container_id(id);
        req.add_cmd("sh");
        req.add_cmd("-c");
        req.add_cmd(script);
        req.set_timeout(20);
        return client_->call(&v1::RuntimeService::Stub::ExecSync, "ExecSync", req);
    }
    bool wait_exited(const std::string& id, std::chrono::milliseconds timeout = 30s) {
        return wait_for([&] { return status(id).state() == v1::CONTAINER_EXITED; }, timeout);
    }
    // The container's pod, created, started; waits until it runs.
    std::string run_container(const std::string& pod_name, v1::ContainerConfig config, const std::string& handler = "") {
        const auto pod = run_pod(pod_name, handler);
        const auto id = create(pod, config);
        if (id.empty()) return id;
        start(id);
        return id;
    }

    // A new connection (the old one went with the crisd that served it).
    void reconnect() { client_ = std::make_unique<CriClient>(kCriSocket); }

    std::unique_ptr<CriClient> client_ = std::make_unique<CriClient>(kCriSocket);
    v1::PodSandboxConfig pod_config_;
};

std::string log_of(const std::string& pod, const std::string& name) {
    return sh("cat " + kLogDir + "/" + pod + "/" + name + ".log").out;
}

void expect_gone(const std::string& id) {
    EXPECT_EQ(sh("systemctl list-units --all --no-legend 'crisd-*" + id + "*' | wc -l").out, "0\n")
        << sh("systemctl list-units --all --no-legend 'crisd-*" + id + "*'").out;
    EXPECT_EQ(sh("findmnt -rn -o TARGET | grep -c " + id).out, "0\n");
    EXPECT_EQ(sh("ls /var/lib/crisd/containers/" + id + ".json /run/crisd/containers/" + id + " 2>/dev/null").out, "");
    EXPECT_EQ(sh("ps -eo args | grep -v grep | grep -c " + id).out, "0\n");
}

class ContainerRuntimes : public Containers, public ::testing::WithParamInterface<std::string> {};

}  // namespace

TEST_P(ContainerRuntimes, LifecycleLogJournalAndExitCode) {
    const std::string pod_name = "life-" + GetParam();
    const auto pod = run_pod(pod_name, GetParam());
    const auto id = create(pod, container_config("main", "echo out-line; echo err-line >&2; exit 3"));
    ASSERT_EQ(id.size(), 64u);
    auto st = status(id);
    EXPECT_EQ(st.state(), v1::CONTAINER_CREATED);
    EXPECT_EQ(st.metadata().name(), "main");
    EXPECT_EQ(st.image().image(), kImage);
    EXPECT_EQ(st.image_ref().rfind("127.0.0.1:5000/busybox@sha256:", 0), 0u) << st.image_ref();
    EXPECT_EQ(st.log_path(), kLogDir + "/" + pod_name + "/main.log");
    EXPECT_EQ(st.labels().at("ctr"), "main");
    start(id);
    ASSERT_TRUE(wait_exited(id));
    st = status(id);
    EXPECT_EQ(st.exit_code(), 3);
    EXPECT_EQ(st.reason(), "Error");
    EXPECT_GT(st.started_at(), 0);
    EXPECT_GE(st.finished_at(), st.started_at());
    const auto log = log_of(pod_name, "main");
    EXPECT_NE(log.find(" stdout F out-line\n"), std::string::npos) << log;
    EXPECT_NE(log.find(" stderr F err-line\n"), std::string::npos) << log;
    EXPECT_TRUE(wait_for([&] {
        return sh("journalctl -q -o cat -u crisd-" + id + ".scope").out.find("out-line") != std::string::npos;
    }, 10s)) << sh("journalctl -q -o cat -u crisd-" + id + ".scope").out;

    // Filters.
    v1::ContainerFilter f;
    f.set_pod_sandbox_id(pod);
    EXPECT_EQ(list(&f).size(), 1u);
    f.Clear();
    f.set_id(id.substr(0, 10));
    EXPECT_EQ(list(&f).size(), 1u);
    f.Clear();
    f.mutable_state()->set_state(v1::CONTAINER_RUNNING);
    EXPECT_EQ(list(&f).size(), 0u);
    f.Clear();
    (*f.mutable_label_selector())["ctr"] = "main";
    EXPECT_EQ(list(&f).size(), 1u);

    stop(id, 10);  // exited already: fine
    remove(id);
    remove(id);  // idempotent
    try {
        status(id);
        ADD_FAILURE() << "status of a removed container";
    } catch (const CallError& e) {
        EXPECT_EQ(e.code(), grpc::StatusCode::NOT_FOUND);
    }
    expect_gone(id);
}

TEST_P(ContainerRuntimes, RunningInItsScopeWithLimitsExecAndStop) {
    auto config = container_config("sleeper", "trap '' TERM; echo ready; while true; do sleep 1; done");
    auto* res = config.mutable_linux()->mutable_resources();
    res->set_memory_limit_in_bytes(64 * 1024 * 1024);
    res->set_cpu_quota(50000);
    res->set_cpu_period(100000);
    res->set_oom_score_adj(-998);  // clamped to 0: root here lacks CAP_SYS_RESOURCE
    const auto id = run_container("run-" + GetParam(), config, GetParam());
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(status(id).state(), v1::CONTAINER_RUNNING);
    const std::string scope = "crisd-" + id + ".scope";
    EXPECT_EQ(unit_property(scope, "ActiveState"), "active");
    EXPECT_EQ(unit_property(scope, "Slice"), "crisd.slice");
    EXPECT_EQ(unit_property("crisd-conmon-" + id + ".scope", "ActiveState"), "active");
    EXPECT_EQ(unit_property("crisd-conmon-" + id + ".scope", "Slice"), "crisd.slice");
    EXPECT_NE(sh("systemctl status " + scope).out.find("sleep"), std::string::npos) << sh("systemctl status " + scope).out;
    const auto prop = [](const std::string& name) {
        return trim(sh("busctl get-property io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1 " + name).out);
    };
    EXPECT_TRUE(wait_for([&] { return prop("RunningContainers") == "u 1"; }, 5s)) << prop("RunningContainers");
    EXPECT_EQ(prop("Containers"), "u 1");
    EXPECT_EQ(unit_property(scope, "MemoryMax"), "67108864");
    EXPECT_EQ(unit_property(scope, "CPUQuotaPerSecUSec"), "500ms");
    const auto cg = unit_property(scope, "ControlGroup");
    EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/memory" + cg + "/memory.limit_in_bytes").out), "67108864") << cg;
    EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/cpu" + cg + "/cpu.cfs_quota_us").out), "50000") << cg;

    // ContainerStats from the scope's cgroup files.
    v1::ContainerStatsRequest sreq;
    sreq.set_container_id(id);
    const auto stats = client_->call(&v1::RuntimeService::Stub::ContainerStats, "ContainerStats", sreq).stats();
    EXPECT_EQ(stats.attributes().id(), id);
    EXPECT_GT(stats.cpu().usage_core_nano_seconds().value(), 0u);
    EXPECT_GT(stats.memory().working_set_bytes().value(), 0u);
    EXPECT_LE(stats.memory().working_set_bytes().value(), 64u * 1024 * 1024);
    v1::ListContainerStatsRequest lreq;
    EXPECT_EQ(client_->call(&v1::RuntimeService::Stub::ListContainerStats, "ListContainerStats", lreq).stats_size(), 1);

    // UpdateContainerResources: SetUnitProperties on the running scope.
    v1::UpdateContainerResourcesRequest up;
    up.set_container_id(id);
    up.mutable_linux()->set_memory_limit_in_bytes(128 * 1024 * 1024);
    up.mutable_linux()->set_cpu_quota(20000);
    up.mutable_linux()->set_cpu_period(100000);
    client_->call(&v1::RuntimeService::Stub::UpdateContainerResources, "UpdateContainerResources", up);
    EXPECT_EQ(unit_property(scope, "MemoryMax"), "134217728");
    EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/memory" + cg + "/memory.limit_in_bytes").out), "134217728");
    // The container's own cpu cgroup: the scope for runc, <scope>/container for crun.
    const auto own_cpu = trim(sh("sed -n 's/^[0-9]*:cpu://p' /proc/$(head -1 /sys/fs/cgroup/systemd" + cg +
                                 "/cgroup.procs)/cgroup").out);
    EXPECT_EQ(own_cpu.rfind(cg, 0), 0u) << own_cpu;
    EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/cpu" + own_cpu + "/cpu.cfs_quota_us").out), "20000") << own_cpu;
    EXPECT_EQ(status(id).resources().linux().memory_limit_in_bytes(), 128 * 1024 * 1024);

    // ReopenContainerLog: the rotated file keeps the old lines, the new one gets the next.
    const std::string log = kLogDir + "/run-" + GetParam() + "/sleeper.log";
    must("mv " + log + " " + log + ".1");
    v1::ReopenContainerLogRequest reopen;
    reopen.set_container_id(id);
    client_->call(&v1::RuntimeService::Stub::ReopenContainerLog, "ReopenContainerLog", reopen);
    EXPECT_EQ(sh("test -f " + log).exit_code, 0) << "reopened at the same path";
    EXPECT_NE(sh("cat " + log + ".1").out.find(" stdout F ready"), std::string::npos);

    // Exec joins the container's own scope and makes no unit: the scopes
    // before and after (not every unit: systemd loads and collects inactive
    // ones that queries name, at its own pace).
    const auto scopes = [&] {
        std::set<std::string> out;
        std::istringstream in(sh("systemctl list-units --all --no-legend --plain --type=scope").out);
        for (std::string line; std::getline(in, line);)
            if (const auto name = line.substr(0, line.find(' ')); !name.empty()) out.insert(name);
        return out;
    };
    const auto scopes_before = scopes();
    auto r = exec(id, "id -u; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep CapEff /proc/self/status; cat /proc/self/oom_score_adj; cat /proc/self/cgroup; exit 7");
    EXPECT_EQ(r.exit_code(), 7);
    EXPECT_NE(r.stdout().find("0\nsh -c"), std::string::npos) << r.stdout();
    EXPECT_NE(r.stdout().find("CapEff:\t00000000000005fb"), std::string::npos) << r.stdout();  // CRI-O's default set
    // Its resource cgroups are the container's (crun puts the container one
    // level down, in .../container); runc also moves it into the scope's
    // name=systemd cgroup, crun on a v1 node leaves that one as it was
    // (crisd-conmon-<id>.scope for ExecSync; see architecture.md).
    const std::string sub = GetParam() == "crun" ? "/container" : "";
    EXPECT_NE(r.stdout().find(":memory:/crisd.slice/" + scope + sub + "\n"), std::string::npos) << r.stdout();
    EXPECT_NE(r.stdout().find(":pids:/crisd.slice/" + scope + sub + "\n"), std::string::npos) << r.stdout();
    if (GetParam() == "runc") {
        EXPECT_NE(r.stdout().find(":name=systemd:/crisd.slice/" + scope + "\n"), std::string::npos) << r.stdout();
    }
    std::vector<std::string> new_scopes;
    for (const auto& s : scopes())
        if (!scopes_before.count(s)) new_scopes.push_back(s);
    EXPECT_TRUE(new_scopes.empty()) << "the exec made " << new_scopes.front();

    // Stop: TERM is ignored, so it takes the timeout, then SIGKILL.
    const auto t0 = std::chrono::steady_clock::now();
    stop(id, 2);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 1900ms);
    EXPECT_LT(took, 15s);
    const auto st = status(id);
    EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
    EXPECT_EQ(st.exit_code(), 137);
    EXPECT_EQ(st.reason(), "Error");
    remove(id);
    expect_gone(id);
}

INSTANTIATE_TEST_SUITE_P(Runtimes, ContainerRuntimes, ::testing::Values("runc", "crun"));

TEST_F(Containers, CompletedAndStopBySigterm) {
    const auto pod = run_pod("done");
    const auto id = create(pod, container_config("ok", "echo fine"));
    start(id);
    ASSERT_TRUE(wait_exited(id));
    EXPECT_EQ(status(id).exit_code(), 0);
    EXPECT_EQ(status(id).reason(), "Completed");

    // The shell is PID 1 of its namespace: without a handler SIGTERM would not reach it.
    const auto id2 = create(pod, container_config("term", "trap 'exit 143' TERM; sleep 1000 & wait"));
    start(id2);
    const auto t0 = std::chrono::steady_clock::now();
    stop(id2, 30);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "SIGTERM ends it";
    EXPECT_EQ(status(id2).exit_code(), 143);
}

TEST_F(Containers, OomKilled) {
    auto config = container_config("oom", "echo start; x=a; while true; do x=$x$x; done");
    config.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(32 * 1024 * 1024);
    const auto id = run_container("oom", config);
    ASSERT_TRUE(wait_exited(id, 60s));
    const auto st = status(id);
    EXPECT_EQ(st.reason(), "OOMKilled") << st.exit_code();
    EXPECT_EQ(st.exit_code(), 137);
}

TEST_F(Containers, UserFromCriAndImage) {
    auto config = container_config("u", "id; grep CapEff /proc/self/status");
    config.mutable_linux()->mutable_security_context()->mutable_run_as_user()->set_value(1000);
    auto id = run_container("user", config);
    ASSERT_TRUE(wait_exited(id));
    auto log = log_of("user", "u");
    // uid 1000 is `app` in the image: its group and supplementary groups come from /etc/passwd and /etc/group.
    EXPECT_NE(log.find("uid=1000(app) gid=1000(app) groups="), std::string::npos) << log;
    EXPECT_NE(log.find("100(users)"), std::string::npos) << log;
    EXPECT_NE(log.find("1001(extra)"), std::string::npos) << log;

    auto named = container_config("n", "id");
    named.mutable_linux()->mutable_security_context()->set_run_as_username("nobody");
    const auto pod = list()[0].pod_sandbox_id();
    id = create(pod, named);
    start(id);
    ASSERT_TRUE(wait_exited(id));
    log = log_of("user", "n");
    EXPECT_NE(log.find("uid=65534(nobody) gid=65534(nogroup)"), std::string::npos) << log;

    auto unknown = container_config("x", "id");
    unknown.mutable_linux()->mutable_security_context()->set_run_as_username("no-such-user");
    EXPECT_EQ(try_create(pod, unknown).error_code(), grpc::StatusCode::NOT_FOUND);

    auto caps = container_config("caps", "grep CapEff /proc/self/status");
    caps.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_drop_capabilities("ALL");
    caps.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_add_capabilities("NET_ADMIN");
    id = create(pod, caps);
    start(id);
    ASSERT_TRUE(wait_exited(id));
    log = log_of("user", "caps");
    EXPECT_NE(log.find("CapEff:\t0000000000001000"), std::string::npos) << log;

    auto priv = container_config("priv", "grep CapEff /proc/self/status");
    priv.mutable_linux()->mutable_security_context()->set_privileged(true);
    id = create(pod, priv);
    start(id);
    ASSERT_TRUE(wait_exited(id));
    EXPECT_EQ(status(id).exit_code(), 0);
    log = log_of("user", "priv");
    const auto own = trim(sh("grep CapBnd /proc/self/status | cut -f2").out);
    EXPECT_NE(log.find("CapEff:\t" + own), std::string::npos) << log << " own bounding set " << own;
}

TEST_F(Containers, BadInput) {
    v1::RunPodSandboxRequest bad_handler;
    *bad_handler.mutable_config() = pod_config("handler");
    bad_handler.set_runtime_handler("no-such-runtime");
    v1::RunPodSandboxResponse resp_handler;
    const auto hs = client_->try_call(&v1::RuntimeService::Stub::RunPodSandbox, bad_handler, &resp_handler);
    EXPECT_EQ(hs.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(hs.error_message().find("no-such-runtime"), std::string::npos) << hs.error_message();

    const auto pod = run_pod("bad");
    EXPECT_EQ(try_create(std::string(64, 'f'), container_config("c", "true")).error_code(),
              grpc::StatusCode::NOT_FOUND);
    auto m = container_config("m", "true");
    auto* mount = m.add_mounts();
    mount->set_container_path("/data");
    mount->set_host_path("/does/not/exist");
    EXPECT_EQ(try_create(pod, m).error_code(), grpc::StatusCode::NOT_FOUND);
    auto img = container_config("i", "true");
    img.mutable_image()->set_image("127.0.0.1:5000/not-pulled:latest");
    EXPECT_EQ(try_create(pod, img).error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(list().empty()) << "failures leave nothing";

    const auto id = create(pod, container_config("same", "true"));
    const auto st = try_create(pod, container_config("same", "true"));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_NE(st.error_message().find(id), std::string::npos) << st.error_message();

    v1::ContainerStatusRequest req;
    req.set_container_id(std::string(64, 'e'));
    v1::ContainerStatusResponse resp;
    EXPECT_EQ(client_->try_call(&v1::RuntimeService::Stub::ContainerStatus, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
    remove(std::string(64, 'e'));  // unknown: fine
}

TEST_F(Containers, MountsReadonlyAndPodFiles) {
    must("mkdir -p /tmp/ctr-mount && echo host-data > /tmp/ctr-mount/f");
    auto config = container_config("m", "cat /data/f; touch /data/x 2>&1 || echo read-only; hostname; cat /etc/hostname; grep -c nameserver /etc/resolv.conf; ls /dev/shm && echo shm-ok");
    auto* mount = config.add_mounts();
    mount->set_container_path("/data");
    mount->set_host_path("/tmp/ctr-mount");
    mount->set_readonly(true);
    const auto id = run_container("mounts", config);
    ASSERT_TRUE(wait_exited(id));
    const auto log = log_of("mounts", "m");
    EXPECT_NE(log.find("F host-data\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F read-only\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F mounts\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F shm-ok\n"), std::string::npos) << log;
    ASSERT_EQ(status(id).mounts_size(), 1);
    EXPECT_TRUE(status(id).mounts(0).readonly());
    sh("rm -rf /tmp/ctr-mount");
}

TEST_F(Containers, SurvivesCrisdRestartAndKill9) {
    const auto id = run_container("restart", container_config("r", "echo up; exec sleep 1000"));
    ASSERT_FALSE(id.empty());
    must("systemctl restart crisd.service");
    reconnect();
    EXPECT_EQ(status(id).state(), v1::CONTAINER_RUNNING);
    EXPECT_EQ(unit_property("crisd-" + id + ".scope", "ActiveState"), "active");
    EXPECT_EQ(exec(id, "echo alive").stdout(), "alive\n");

    // kill -9; the container ends while crisd is away; the next crisd reads the exit file.
    const auto main_pid = unit_property("crisd.service", "MainPID");
    must("systemctl kill -s KILL crisd.service");
    for (int i = 0; i < 100 && unit_property("crisd.service", "MainPID") == main_pid; ++i) ::usleep(50000);
    sh("systemctl reset-failed crisd.service");
    must("systemctl kill -s KILL crisd-" + id + ".scope");
    EXPECT_TRUE(wait_for([&] { return sh("ls /run/crisd/exits/" + id).exit_code == 0; }, 10s));
    reconnect();
    const auto st = status(id);  // starts crisd again through the socket
    EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
    EXPECT_EQ(st.exit_code(), 137);
    remove(id);
    expect_gone(id);
}

TEST_F(Containers, EventsForTheContainerLifecycle) {
    const auto pod = run_pod("events");
    auto ctx = client_->context();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = client_->runtime().GetContainerEvents(ctx.get(), v1::GetEventsRequest());
    ::usleep(200000);  // subscribed
    const auto id = create(pod, container_config("ev", "exit 0"));
    start(id);
    ASSERT_TRUE(wait_exited(id));
    remove(id);
    std::vector<v1::ContainerEventType> types;
    v1::ContainerEventResponse e;
    while (types.size() < 4 && reader->Read(&e)) {
        if (e.container_id() != id) continue;
        EXPECT_EQ(e.pod_sandbox_status().id(), pod);
        bool listed = false;
        for (const auto& c : e.containers_statuses()) listed = listed || c.id() == id;
        EXPECT_TRUE(listed) << "the event carries the container's status";
        types.push_back(e.container_event_type());
    }
    ctx->TryCancel();
    EXPECT_EQ(types, (std::vector<v1::ContainerEventType>{v1::CONTAINER_CREATED_EVENT, v1::CONTAINER_STARTED_EVENT,
                                                          v1::CONTAINER_STOPPED_EVENT,
                                                          v1::CONTAINER_DELETED_EVENT}));
}

TEST_F(Containers, HostNetworkReadonlyRootEnvWorkdirAndDevices) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = pod_config("hostnet");
    auto* ns = req.mutable_config()->mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(v1::NODE);
    ns->set_ipc(v1::NODE);
    pod_config_ = req.config();
    const auto pod = client_->call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
    auto config = container_config(
        "h", "ls /sys/class/net | grep -q crisd0 && echo host-net; echo hn=$(hostname); echo env=$FOO; echo pwd=$(pwd); "
             "touch /rootfile 2>/dev/null || echo root-ro; echo x > /dev/xnull && echo dev-ok; "
             "test \"$(hostname)\" = \"$(cat /etc/hostname)\" && echo host-name-ok");
    auto* kv = config.add_envs();
    kv->set_key("FOO");
    kv->set_value("bar baz");
    config.set_working_dir("/tmp");
    config.mutable_linux()->mutable_security_context()->set_readonly_rootfs(true);
    auto* dev = config.add_devices();
    dev->set_container_path("/dev/xnull");
    dev->set_host_path("/dev/null");
    dev->set_permissions("rwm");
    const auto id = create(pod, config);
    ASSERT_FALSE(id.empty());
    start(id);
    ASSERT_TRUE(wait_exited(id));
    EXPECT_EQ(status(id).exit_code(), 0);
    const auto log = log_of("hostnet", "h");
    EXPECT_NE(log.find("F host-net\n"), std::string::npos) << "the node's interfaces: " << log;
    EXPECT_NE(log.find("F hn=" + trim(must("hostname")) + "\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F env=bar baz\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F pwd=/tmp\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F root-ro\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F dev-ok\n"), std::string::npos) << log;
    EXPECT_NE(log.find("F host-name-ok\n"), std::string::npos) << log;
}

TEST_F(Containers, ConcurrentCreatesOfOneNameGetOneContainer) {
    const auto pod = run_pod("twice");
    std::string a, b;
    grpc::Status sa, sb;
    std::thread t([&] {
        CriClient other(kCriSocket);
        v1::CreateContainerRequest req;
        req.set_pod_sandbox_id(pod);
        *req.mutable_config() = container_config("one", "sleep 5");
        v1::CreateContainerResponse resp;
        sa = other.try_call(&v1::RuntimeService::Stub::CreateContainer, req, &resp);
        a = resp.container_id();
    });
    sb = try_create(pod, container_config("one", "sleep 5"), &b);
    t.join();
    // Both succeed with the one container, or the later one (after the first
    // finished) is told the name is taken, naming it.
    ASSERT_TRUE(sa.ok() || sb.ok()) << sa.error_message() << " / " << sb.error_message();
    if (sa.ok() && sb.ok()) {
        EXPECT_EQ(a, b);
    } else {
        const auto& failed = sa.ok() ? sb : sa;
        EXPECT_EQ(failed.error_code(), grpc::StatusCode::ALREADY_EXISTS);
        EXPECT_NE(failed.error_message().find(sa.ok() ? a : b), std::string::npos) << failed.error_message();
    }
    EXPECT_EQ(list().size(), 1u);
}

TEST_F(Containers, DbusSignalsForStartAndExit) {
    const auto pod = run_pod("signals");
    const auto id = create(pod, container_config("s", "sleep 1; exit 4"));
    ASSERT_FALSE(id.empty());
    must("(timeout 15 busctl --system monitor --match \"type='signal',interface='io.crisd.Daemon1'\" "
         "> /tmp/crisd-signals.txt 2>&1 &) ; sleep 1");
    start(id);
    ASSERT_TRUE(wait_exited(id));
    EXPECT_TRUE(wait_for([&] {
        const auto out = sh("cat /tmp/crisd-signals.txt").out;
        return out.find("ContainerStarted") != std::string::npos && out.find("ContainerExited") != std::string::npos;
    }, 10s)) << sh("cat /tmp/crisd-signals.txt").out;
    const auto out = sh("cat /tmp/crisd-signals.txt").out;
    EXPECT_NE(out.find(id), std::string::npos);
    sh("rm -f /tmp/crisd-signals.txt");  // the monitor ends with its timeout
}

TEST_F(Containers, ScopesInThePodsSlice) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = pod_config("sliced");
    req.mutable_config()->mutable_linux()->set_cgroup_parent("kubepods-besteffort-podctrtest.slice");
    pod_config_ = req.config();
    const auto pod = client_->call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
    auto config = container_config("in-slice", "sleep 1000");
    config.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(48 * 1024 * 1024);
    const auto id = create(pod, config);
    ASSERT_FALSE(id.empty());
    start(id);
    EXPECT_EQ(unit_property("crisd-" + id + ".scope", "Slice"), "kubepods-besteffort-podctrtest.slice");
    EXPECT_EQ(unit_property("crisd-conmon-" + id + ".scope", "Slice"), "kubepods-besteffort-podctrtest.slice");
    EXPECT_EQ(unit_property("crisd-" + id + ".scope", "ControlGroup"),
              "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podctrtest.slice/crisd-" + id + ".scope");
    EXPECT_EQ(unit_property("crisd-" + id + ".scope", "MemoryMax"), "50331648");
    // What `systemctl status` shows names the container, not the runtime.
    EXPECT_EQ(unit_property("crisd-" + id + ".scope", "Description"),
              "crisd container in-slice in pod " + pod_config_.metadata().namespace_() + "/" +
                  pod_config_.metadata().name());
    EXPECT_EQ(unit_property("crisd-conmon-" + id + ".scope", "Description"),
              "crisd-conmon of container in-slice in pod " + pod_config_.metadata().namespace_() + "/" +
                  pod_config_.metadata().name());
    v1::ContainerStatsRequest sreq;
    sreq.set_container_id(id);
    const auto stats = client_->call(&v1::RuntimeService::Stub::ContainerStats, "ContainerStats", sreq).stats();
    EXPECT_GT(stats.memory().working_set_bytes().value(), 0u);
    // StopPodSandbox stops the pod's containers (no grace).
    v1::StopPodSandboxRequest stop_req;
    stop_req.set_pod_sandbox_id(pod);
    client_->call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop_req);
    EXPECT_EQ(status(id).state(), v1::CONTAINER_EXITED);
    EXPECT_EQ(status(id).exit_code(), 137);
}

// CNI through the CRI (issue 9): a container reaches a server in another pod
// by that pod's IP.
TEST_F(Containers, ReachesAServerInAnotherPod) {
    const auto server_pod = run_pod("net-server");
    const auto server = create(server_pod, container_config(
        "httpd", "mkdir -p /tmp/www && echo hello from the server pod > /tmp/www/index.html && "
                 "exec httpd -f -p 8080 -h /tmp/www"));
    start(server);
    v1::PodSandboxStatusRequest pst;
    pst.set_pod_sandbox_id(server_pod);
    const auto ip = client_->call(&v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", pst)
                        .status().network().ip();
    ASSERT_EQ(ip.rfind("10.85.", 0), 0u) << "server pod IP " << ip;

    const auto client_pod = run_pod("net-client");
    const auto cli = create(client_pod, container_config(
        "wget", "for i in $(seq 100); do wget -q -O - http://" + ip + ":8080/ && exit 0; sleep 0.1; done; exit 1"));
    start(cli);
    ASSERT_TRUE(wait_exited(cli));
    EXPECT_EQ(status(cli).exit_code(), 0);
    EXPECT_NE(log_of("net-client", "wget").find("stdout F hello from the server pod"), std::string::npos)
        << log_of("net-client", "wget");
}

// ---- seccomp (issue 8) ----

namespace {

// "Seccomp:" and "Seccomp_filters:" of a process's status. The node runs
// under systemd-nspawn's own filter, so the number of filters is compared
// with the node's: a profile adds one.
std::pair<int, int> seccomp_of(const std::string& status_text) {
    int mode = -1, filters = -1;
    std::istringstream in(status_text);
    std::string line;
    while (std::getline(in, line)) {  // also CRI log lines: "<time> stdout F Seccomp:\t2"
        if (const auto p = line.find("Seccomp:"); p != std::string::npos) mode = std::stoi(line.substr(p + 8));
        if (const auto p = line.find("Seccomp_filters:"); p != std::string::npos)
            filters = std::stoi(line.substr(p + 16));
    }
    return {mode, filters};
}

void set_seccomp(v1::ContainerConfig& c, v1::SecurityProfile::ProfileType type, const std::string& ref = "") {
    auto* p = c.mutable_linux()->mutable_security_context()->mutable_seccomp();
    p->set_profile_type(type);
    p->set_localhost_ref(ref);
}

}  // namespace

TEST_P(ContainerRuntimes, SeccompProfiles) {
    // The node's init: crisd and its containers descend from it (a command run
    // into the node with nsenter does not).
    const auto node = seccomp_of(must("grep Seccomp /proc/1/status"));
    const auto pod = run_pod("seccomp-" + GetParam(), GetParam());
    const std::string script = "grep Seccomp /proc/self/status; mkdir /tmp/made 2>&1; echo mkdir=$?";
    auto run = [&](const std::string& name, const v1::ContainerConfig& config) {
        const auto id = create(pod, config);
        if (id.empty()) return std::string();
        start(id);
        EXPECT_TRUE(wait_exited(id)) << name;
        return log_of("seccomp-" + GetParam(), name);
    };

    // RuntimeDefault: the containers-common profile, one filter more than the node.
    auto rd = container_config("rd", script);
    set_seccomp(rd, v1::SecurityProfile::RuntimeDefault);
    auto log = run("rd", rd);
    auto got = seccomp_of(log);
    EXPECT_EQ(got.first, 2) << log;
    EXPECT_EQ(got.second, node.second + 1) << log << " node: " << node.second;
    EXPECT_NE(log.find("mkdir=0"), std::string::npos) << log;

    // Unconfined (and no profile at all): nothing added.
    auto un = container_config("un", script);
    set_seccomp(un, v1::SecurityProfile::Unconfined);
    log = run("un", un);
    got = seccomp_of(log);
    EXPECT_EQ(got.second, node.second) << log;
    EXPECT_EQ(got.first, node.first) << log;  // 0 on a node without a filter of its own
    log = run("none", container_config("none", script));
    EXPECT_EQ(seccomp_of(log).second, node.second) << log;

    // Privileged: no seccomp even when RuntimeDefault is asked for.
    auto priv = container_config("priv", script);
    set_seccomp(priv, v1::SecurityProfile::RuntimeDefault);
    priv.mutable_linux()->mutable_security_context()->set_privileged(true);
    log = run("priv", priv);
    EXPECT_EQ(seccomp_of(log).second, node.second) << log;

    // Localhost, containers format: mkdir fails with EPERM.
    const std::string dir = "/tmp/crisd-seccomp-" + GetParam();
    must("mkdir -p " + dir);
    must("echo '{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"archMap\":[{\"architecture\":\"SCMP_ARCH_X86_64\","
         "\"subArchitectures\":[\"SCMP_ARCH_X86\"]}],\"syscalls\":[{\"names\":[\"mkdir\",\"mkdirat\"],"
         "\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":1,\"includes\":{},\"excludes\":{}}]}' > " + dir + "/deny-mkdir.json");
    auto lh = container_config("lh", script);
    set_seccomp(lh, v1::SecurityProfile::Localhost, dir + "/deny-mkdir.json");
    log = run("lh", lh);
    EXPECT_EQ(seccomp_of(log).second, node.second + 1) << log;
    EXPECT_NE(log.find("Operation not permitted"), std::string::npos) << log;
    EXPECT_NE(log.find("mkdir=1"), std::string::npos) << log;

    // Localhost, OCI format, through the deprecated seccomp_profile_path: EACCES.
    must("echo '{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"mkdir\",\"mkdirat\"],"
         "\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":13}]}' > " + dir + "/oci.json");
    auto oci = container_config("oci", script);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    oci.mutable_linux()->mutable_security_context()->set_seccomp_profile_path("localhost/" + dir + "/oci.json");
#pragma GCC diagnostic pop
    log = run("oci", oci);
    EXPECT_NE(log.find("Permission denied"), std::string::npos) << log;

    // Bad Localhost profiles: INVALID_ARGUMENT naming the file, nothing left.
    const auto before = list().size();
    const auto units = sh("systemctl list-units --all --no-legend 'crisd-*.scope' | wc -l").out;
    for (const auto& [ref, needle] : std::vector<std::pair<std::string, std::string>>{
             {dir + "/missing.json", dir + "/missing.json"},
             {"relative.json", "relative.json"}}) {
        auto bad = container_config("bad", "true");
        set_seccomp(bad, v1::SecurityProfile::Localhost, ref);
        const auto st = try_create(pod, bad);
        EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ref;
        EXPECT_NE(st.error_message().find(needle), std::string::npos) << st.error_message();
    }
    must("echo '{\"defaultAction\": ' > " + dir + "/broken.json");
    auto broken = container_config("bad", "true");
    set_seccomp(broken, v1::SecurityProfile::Localhost, dir + "/broken.json");
    const auto st = try_create(pod, broken);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find(dir + "/broken.json"), std::string::npos) << st.error_message();
    EXPECT_EQ(list().size(), before) << "no container record";
    EXPECT_EQ(sh("systemctl list-units --all --no-legend 'crisd-*.scope' | wc -l").out, units) << "no scope";
    EXPECT_EQ(sh("ls /var/lib/crisd/containers | wc -l").out, std::to_string(before) + "\n");
    // The name is free again.
    EXPECT_FALSE(create(pod, container_config("bad", "true")).empty());
    sh("rm -rf " + dir);
}

// ---- pod stats, resources, runtime config (issue 8) ----

TEST_F(Containers, PodSandboxStatsAndList) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = pod_config("stats-sliced");
    req.mutable_config()->mutable_linux()->set_cgroup_parent("kubepods-burstable-podstatstest.slice");
    pod_config_ = req.config();
    const auto sliced = client_->call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
    const auto a = create(sliced, container_config("a", "while true; do sleep 1; done"));
    start(a);
    const auto plain = run_pod("stats-plain");
    const auto b = create(plain, container_config("b", "ping -c 3 -W 1 127.0.0.1 >/dev/null; wget -q -T 1 http://10.85.0.1:1/ ; sleep 1000"));
    start(b);
    const auto idle = run_pod("stats-idle");

    v1::PodSandboxStatsRequest sreq;
    sreq.set_pod_sandbox_id(sliced);
    auto s = client_->call(&v1::RuntimeService::Stub::PodSandboxStats, "PodSandboxStats", sreq).stats();
    EXPECT_EQ(s.attributes().id(), sliced);
    EXPECT_EQ(s.attributes().metadata().name(), "stats-sliced");
    EXPECT_EQ(s.attributes().labels().at("test"), "container");
    EXPECT_GT(s.linux().cpu().usage_core_nano_seconds().value(), 0u);
    EXPECT_GT(s.linux().memory().working_set_bytes().value(), 0u);
    EXPECT_GE(s.linux().process().process_count().value(), 2u) << "the shell, sleep (and conmon, in the slice)";
    ASSERT_EQ(s.linux().containers_size(), 1);
    EXPECT_EQ(s.linux().containers(0).attributes().id(), a);
    EXPECT_GT(s.linux().containers(0).memory().working_set_bytes().value(), 0u);
    // The slice holds the container and its conmon: at least the container's usage.
    EXPECT_GE(s.linux().memory().usage_bytes().value(), s.linux().containers(0).memory().usage_bytes().value());
    EXPECT_TRUE(wait_for([&] {
        s = client_->call(&v1::RuntimeService::Stub::PodSandboxStats, "PodSandboxStats", sreq).stats();
        return s.linux().network().default_interface().name() == "eth0";
    }, 5s)) << s.DebugString();

    sreq.set_pod_sandbox_id(plain);
    EXPECT_TRUE(wait_for([&] {
        s = client_->call(&v1::RuntimeService::Stub::PodSandboxStats, "PodSandboxStats", sreq).stats();
        return s.linux().network().default_interface().tx_bytes().value() > 0;
    }, 10s)) << s.DebugString();
    EXPECT_EQ(s.linux().containers_size(), 1);
    EXPECT_GE(s.linux().process().process_count().value(), 1u);
    EXPECT_GT(s.linux().memory().working_set_bytes().value(), 0u);

    sreq.set_pod_sandbox_id(idle);
    s = client_->call(&v1::RuntimeService::Stub::PodSandboxStats, "PodSandboxStats", sreq).stats();
    EXPECT_EQ(s.attributes().id(), idle);
    EXPECT_EQ(s.linux().containers_size(), 0);

    v1::ListPodSandboxStatsRequest lreq;
    auto all = client_->call(&v1::RuntimeService::Stub::ListPodSandboxStats, "ListPodSandboxStats", lreq);
    EXPECT_EQ(all.stats_size(), 3);
    lreq.mutable_filter()->set_id(sliced.substr(0, 12));
    all = client_->call(&v1::RuntimeService::Stub::ListPodSandboxStats, "ListPodSandboxStats", lreq);
    ASSERT_EQ(all.stats_size(), 1);
    EXPECT_EQ(all.stats(0).attributes().id(), sliced);
    lreq.clear_filter();
    (*lreq.mutable_filter()->mutable_label_selector())["test"] = "nope";
    EXPECT_EQ(client_->call(&v1::RuntimeService::Stub::ListPodSandboxStats, "ListPodSandboxStats", lreq).stats_size(), 0);

    sreq.set_pod_sandbox_id(std::string(64, 'e'));
    v1::PodSandboxStatsResponse resp;
    EXPECT_EQ(client_->try_call(&v1::RuntimeService::Stub::PodSandboxStats, sreq, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
}

TEST_P(ContainerRuntimes, SwapHugepagesAndUnified) {
    const bool v2 = trim(sh("stat -f -c %T /sys/fs/cgroup").out) == "cgroup2fs";
    const bool memsw = sh("test -f /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exit_code == 0;
    const bool hugetlb = sh("test -d /sys/fs/cgroup/hugetlb").exit_code == 0;
    const auto pod = run_pod("res-" + GetParam(), GetParam());

    // unified needs a cgroup v2 node: a clear error here, not ignored.
    auto uni = container_config("uni", "true");
    (*uni.mutable_linux()->mutable_resources()->mutable_unified())["memory.high"] = "100000000";
    if (!v2) {
        const auto st = try_create(pod, uni);
        EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_NE(st.error_message().find("cgroup v2"), std::string::npos) << st.error_message();
    }
    // Swap below memory: memory_swap_limit_in_bytes is memory + swap.
    auto low = container_config("low", "true");
    low.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(64 << 20);
    low.mutable_linux()->mutable_resources()->set_memory_swap_limit_in_bytes(32 << 20);
    EXPECT_EQ(try_create(pod, low).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    auto badsize = container_config("badsize", "true");
    auto* h = badsize.mutable_linux()->mutable_resources()->add_hugepage_limits();
    h->set_page_size("2 megs");
    h->set_limit(0);
    EXPECT_EQ(try_create(pod, badsize).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(list().empty());

    auto config = container_config("swap", "while true; do sleep 1; done");
    auto* res = config.mutable_linux()->mutable_resources();
    res->set_memory_limit_in_bytes(64 << 20);
    res->set_memory_swap_limit_in_bytes(96 << 20);
    h = res->add_hugepage_limits();
    h->set_page_size("2MB");
    h->set_limit(0);
    const auto id = create(pod, config);
    ASSERT_FALSE(id.empty());
    start(id);
    const auto bundle = "/run/crisd/containers/" + id + "/config.json";
    const auto cg = unit_property("crisd-" + id + ".scope", "ControlGroup");
    // The container's own memory cgroup: the scope for runc, <scope>/container for crun.
    const auto own = trim(sh("sed -n 's/^[0-9]*:memory://p' /proc/$(head -1 /sys/fs/cgroup/systemd" + cg +
                             "/cgroup.procs)/cgroup").out);
    EXPECT_EQ(own.rfind(cg, 0), 0u) << own;
    EXPECT_EQ(sh("grep -c '\"hugepageLimits\"' " + bundle).out, hugetlb ? "1\n" : "0\n");
    if (memsw) {
        EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/memory" + own + "/memory.memsw.limit_in_bytes").out),
                  std::to_string(96 << 20)) << own;
        EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/memory" + cg + "/memory.limit_in_bytes").out), std::to_string(64 << 20));
    }
    if (hugetlb) {
        EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/hugetlb" + cg + "/hugetlb.2MB.limit_in_bytes").out), "0");
    }
    EXPECT_EQ(status(id).resources().linux().memory_swap_limit_in_bytes(), 96 << 20);

    // Raise both: memsw first, or the kernel refuses the memory limit.
    v1::UpdateContainerResourcesRequest up;
    up.set_container_id(id);
    up.mutable_linux()->set_memory_limit_in_bytes(128 << 20);
    up.mutable_linux()->set_memory_swap_limit_in_bytes(160 << 20);
    client_->call(&v1::RuntimeService::Stub::UpdateContainerResources, "UpdateContainerResources", up);
    EXPECT_EQ(unit_property("crisd-" + id + ".scope", "MemoryMax"), std::to_string(128 << 20));
    if (memsw) {
        EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/memory" + cg + "/memory.limit_in_bytes").out), std::to_string(128 << 20));
        EXPECT_EQ(trim(sh("cat /sys/fs/cgroup/memory" + own + "/memory.memsw.limit_in_bytes").out),
                  std::to_string(160 << 20)) << own;
    }
    EXPECT_EQ(status(id).resources().linux().memory_swap_limit_in_bytes(), 160 << 20);
    {  // A swap limit alone, below the memory limit the container has.
        v1::UpdateContainerResourcesRequest low_swap;
        low_swap.set_container_id(id);
        low_swap.mutable_linux()->set_memory_swap_limit_in_bytes(100 << 20);
        v1::UpdateContainerResourcesResponse ur;
        EXPECT_EQ(client_->try_call(&v1::RuntimeService::Stub::UpdateContainerResources, low_swap, &ur).error_code(),
                  grpc::StatusCode::INVALID_ARGUMENT);
    }
    if (!v2) {
        v1::UpdateContainerResourcesRequest uu;
        uu.set_container_id(id);
        (*uu.mutable_linux()->mutable_unified())["memory.high"] = "1";
        v1::UpdateContainerResourcesResponse ur;
        EXPECT_EQ(client_->try_call(&v1::RuntimeService::Stub::UpdateContainerResources, uu, &ur).error_code(),
                  grpc::StatusCode::INVALID_ARGUMENT);
    }
}

TEST_F(Containers, UpdateRuntimeConfigKeepsThePodCidr) {
    v1::UpdateRuntimeConfigRequest req;
    req.mutable_runtime_config()->mutable_network_config()->set_pod_cidr("10.244.7.0/24");
    client_->call(&v1::RuntimeService::Stub::UpdateRuntimeConfig, "UpdateRuntimeConfig", req);
    v1::StatusRequest sreq;
    sreq.set_verbose(true);
    const auto st = client_->call(&v1::RuntimeService::Stub::Status, "Status", sreq);
    ASSERT_TRUE(st.info().count("config"));
    EXPECT_NE(st.info().at("config").find("\"podCIDR\":\"10.244.7.0/24\""), std::string::npos) << st.info().at("config");
    EXPECT_NE(sh("journalctl -q -o cat -u crisd.service | grep -c 10.244.7.0/24").out, "0\n");
    // An empty CIDR is accepted too.
    req.mutable_runtime_config()->mutable_network_config()->set_pod_cidr("");
    client_->call(&v1::RuntimeService::Stub::UpdateRuntimeConfig, "UpdateRuntimeConfig", req);
}

// ---- the infra container: pods whose containers share one PID namespace ----

namespace {

// The pod's verbose status info (the record as JSON).
nlohmann::json pod_info(CriClient& c, const std::string& pod) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod);
    req.set_verbose(true);
    const auto resp = c.call(&v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", req);
    return nlohmann::json::parse(resp.info().at("info"));
}

v1::PodSandboxState pod_state(CriClient& c, const std::string& pod) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod);
    return c.call(&v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", req).status().state();
}

std::string ns_inode(const std::string& path) { return trim(sh("stat -L -c %i " + path).out); }
// "net:[4026532]" -> "4026532"
std::string proc_ns_inode(int pid, const char* ns) {
    const auto link = trim(sh("readlink /proc/" + std::to_string(pid) + "/ns/" + ns).out);
    const auto open = link.find('[');
    return open == std::string::npos ? link : link.substr(open + 1, link.size() - open - 2);
}

void expect_no_units_of(const std::string& id) {
    EXPECT_EQ(sh("systemctl list-units --all --no-legend 'crisd-*" + id + "*' | wc -l").out, "0\n")
        << sh("systemctl list-units --all --no-legend 'crisd-*" + id + "*'").out;
}

}  // namespace

class Infra : public Containers {
protected:
    std::string run_shared_pid_pod(const std::string& name, const std::string& handler = "",
                                   const std::string& slice = "") {
        v1::RunPodSandboxRequest req;
        *req.mutable_config() = pod_config(name);
        req.mutable_config()->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(
            v1::POD);
        if (!slice.empty()) req.mutable_config()->mutable_linux()->set_cgroup_parent(slice);
        req.set_runtime_handler(handler);
        pod_config_ = req.config();
        return client_->call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
    }
    // The container's pid on the node (verbose ContainerStatus).
    int status_pid(const std::string& id) {
        v1::ContainerStatusRequest req;
        req.set_container_id(id);
        req.set_verbose(true);
        const auto resp = client_->call(&v1::RuntimeService::Stub::ContainerStatus, "ContainerStatus", req);
        return nlohmann::json::parse(resp.info().at("info"))["pid"].get<int>();
    }
    v1::ContainerConfig shared(v1::ContainerConfig c) {
        c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_pid(v1::POD);
        return c;
    }
};

class InfraHandlers : public Infra, public ::testing::WithParamInterface<std::string> {};

// Two containers of a POD-pid pod see each other's processes; PID 1 is
// crisd-pause, run like any container (its own scopes in the pod's slice,
// the pod's handler), in the pod's network/IPC/UTS namespaces, without
// capabilities; it reaps orphans; stop and remove leave nothing.
TEST_P(InfraHandlers, SharedPidNamespaceWithPauseAsPid1) {
    const std::string handler = GetParam();
    const std::string slice = "kubepods-besteffort-podinfra" + handler + ".slice";
    const auto pod = run_shared_pid_pod("shared-" + handler, handler, slice);
    ASSERT_EQ(pod.size(), 64u);
    auto info = pod_info(*client_, pod);
    ASSERT_TRUE(info.contains("infra")) << info.dump();
    EXPECT_EQ(info["infra"]["id"], pod) << "the infra container has the pod's id";
    const int pid = info["infra"]["pid"].get<int>();
    ASSERT_GT(pid, 0) << info.dump();

    // Its scopes, in the pod's slice.
    const std::string scope = "crisd-" + pod + ".scope", conmon_scope = "crisd-conmon-" + pod + ".scope";
    EXPECT_EQ(unit_property(scope, "ActiveState"), "active");
    EXPECT_EQ(unit_property(scope, "Slice"), slice);
    EXPECT_EQ(unit_property(conmon_scope, "ActiveState"), "active");
    EXPECT_EQ(unit_property(conmon_scope, "Slice"), slice);
    EXPECT_EQ(unit_property(scope, "Description"), "crisd infra container of pod " +
                                                       pod_config_.metadata().namespace_() + "/shared-" + handler);
    EXPECT_NE(sh("systemctl status " + scope).out.find("/pause"), std::string::npos) << sh("systemctl status " + scope).out;
    const auto conmon = sh("ps -eo args | grep -v grep | grep '^/usr/libexec/crisd/crisd-conmon --id " + pod + "'").out;
    EXPECT_NE(conmon.find("/" + handler + " --exit-dir"), std::string::npos) << "the pod's handler: " << conmon;
    EXPECT_EQ(sh("test -d /run/" + handler + "/" + pod).exit_code, 0) << "the handler's state of it";

    // The pause process: the pod's namespaces, no privileges.
    const auto proc_status = sh("cat /proc/" + std::to_string(pid) + "/status").out;
    EXPECT_NE(proc_status.find("Uid:\t65535"), std::string::npos) << proc_status;
    EXPECT_NE(proc_status.find("CapEff:\t0000000000000000"), std::string::npos) << proc_status;
    EXPECT_NE(proc_status.find("CapBnd:\t0000000000000000"), std::string::npos) << proc_status;
    EXPECT_NE(proc_status.find("NoNewPrivs:\t1"), std::string::npos) << proc_status;
    EXPECT_EQ(proc_ns_inode(pid, "net"), ns_inode("/run/crisd/ns/" + pod + "/net"));
    EXPECT_EQ(proc_ns_inode(pid, "ipc"), ns_inode("/run/crisd/ns/" + pod + "/ipc"));
    EXPECT_EQ(proc_ns_inode(pid, "uts"), ns_inode("/run/crisd/ns/" + pod + "/uts"));
    EXPECT_NE(proc_ns_inode(pid, "pid"), proc_ns_inode(::getpid(), "pid")) << "a PID namespace of its own";
    EXPECT_EQ(sh("findmnt -rn -o TARGET | grep -c " + pod + "/infra").out, "0\n") << "no mount on the node";

    // Two containers: each sees the other's processes, and /pause as PID 1.
    const auto a = create(pod, shared(container_config("a", "echo a-up; exec sleep 1001")));
    const auto b = create(pod, shared(container_config("b", "echo b-up; exec sleep 1002")));
    start(a);
    start(b);
    const std::string list_procs = "tr '\\0' ' ' < /proc/1/cmdline; echo; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done";
    for (const auto& id : {a, b}) {
        const auto r = exec(id, list_procs);
        EXPECT_EQ(r.stdout().rfind("/pause \n", 0), 0u) << r.stdout();
        EXPECT_NE(r.stdout().find("sleep 1001"), std::string::npos) << r.stdout();
        EXPECT_NE(r.stdout().find("sleep 1002"), std::string::npos) << r.stdout();
        EXPECT_EQ(proc_ns_inode(status_pid(id), "pid"), proc_ns_inode(pid, "pid"));
    }
    EXPECT_NE(exec(b, "ps -o pid,args").stdout().find("sleep 1001"), std::string::npos) << exec(b, "ps -o pid,args").stdout();
    // An orphan goes to PID 1, which reaps it: no zombie is left.
    exec(a, "sh -c 'sleep 0.2 &'");
    std::this_thread::sleep_for(1500ms);
    EXPECT_EQ(exec(a, "grep -l 'State:.*Z' /proc/[0-9]*/status").stdout(), "") << exec(a, "ps -o pid,stat,args").stdout();

    // Stop: the containers first, then the infra container.
    v1::StopPodSandboxRequest stop_req;
    stop_req.set_pod_sandbox_id(pod);
    client_->call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop_req);
    EXPECT_EQ(pod_state(*client_, pod), v1::SANDBOX_NOTREADY);
    EXPECT_EQ(status(a).state(), v1::CONTAINER_EXITED);
    EXPECT_EQ(status(b).state(), v1::CONTAINER_EXITED);
    EXPECT_TRUE(wait_unit_state(scope, "inactive", 10)) << unit_property(scope, "ActiveState");
    EXPECT_EQ(sh("kill -0 " + std::to_string(pid)).exit_code, 1) << "crisd-pause has ended";
    client_->call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop_req);  // idempotent

    v1::RemovePodSandboxRequest rm;
    rm.set_pod_sandbox_id(pod);
    client_->call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm);
    for (const auto& id : {pod, a, b}) expect_no_units_of(id);
    EXPECT_EQ(sh("ls /run/crisd/pods/" + pod + " /run/crisd/exits/" + pod + " /run/" + handler + "/" + pod +
                 " 2>/dev/null").out, "");
    EXPECT_EQ(sh("ps -eo args | grep -v grep | grep -c " + pod).out, "0\n");
}

INSTANTIATE_TEST_SUITE_P(Runtimes, InfraHandlers, ::testing::Values("runc", "crun"));

TEST_F(Infra, PodsWithoutPidSharingHaveNone) {
    const auto pod = run_pod("no-infra");
    const auto id = create(pod, container_config("c", "exec sleep 1000"));
    start(id);
    const auto info = pod_info(*client_, pod);
    EXPECT_EQ(info["infra"]["id"], "") << info.dump();
    expect_no_units_of(pod);
    EXPECT_EQ(sh("ps -eo args | grep -v grep | grep -c " + pod).out, "0\n") << "no conmon, no pause";
    EXPECT_EQ(sh("pgrep -xc pause").out, "0\n") << "no crisd-pause anywhere";
    // Its container has a PID namespace of its own.
    EXPECT_EQ(exec(id, "tr '\\0' ' ' < /proc/1/cmdline").stdout(), "sleep 1000 ");
    // Asking for the pod's PID namespace in such a pod is refused, and leaves nothing.
    EXPECT_EQ(try_create(pod, shared(container_config("p", "true"))).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(list().size(), 1u);
}

// A container joins the PID namespace of another (TARGET, ephemeral containers).
TEST_F(Infra, TargetJoinsAnotherContainersPidNamespace) {
    const auto pod = run_pod("target");
    const auto main = create(pod, container_config("main", "exec sleep 1003"));
    start(main);
    auto dbg = container_config("debug", "exec sleep 1004");
    auto* ns = dbg.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_pid(v1::TARGET);
    ns->set_target_id(main);
    const auto d = create(pod, dbg);
    ASSERT_FALSE(d.empty());
    start(d);
    const auto r = exec(d, "cat /proc/1/cmdline | tr '\\0' ' '");
    EXPECT_EQ(r.stdout().rfind("sleep 1003", 0), 0u) << "the target's process is PID 1: " << r.stdout();
    // The target's init does not end the debug container: stop signals all of its processes.
    stop(d, 5);
    EXPECT_EQ(status(d).state(), v1::CONTAINER_EXITED);
    EXPECT_EQ(status(main).state(), v1::CONTAINER_RUNNING);

    ns->set_target_id(std::string(64, 'e'));
    dbg.mutable_metadata()->set_name("debug2");
    EXPECT_EQ(try_create(pod, dbg).error_code(), grpc::StatusCode::NOT_FOUND);
    ns->set_target_id("");
    EXPECT_EQ(try_create(pod, dbg).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    const auto other = run_pod("target-other");
    ns->set_target_id(main);
    EXPECT_EQ(try_create(other, dbg).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "another pod's container";
    EXPECT_EQ(list().size(), 2u) << "refusals leave nothing";
}

// crisd killed with -9 and started again finds the pod ready and its infra
// container running; the infra container's end makes the pod NOTREADY.
TEST_F(Infra, SurvivesCrisdKill9AndItsDeathMakesThePodNotReady) {
    const auto pod = run_shared_pid_pod("infra-restart");
    const auto id = create(pod, shared(container_config("c", "exec sleep 1005")));
    start(id);
    const int pid = pod_info(*client_, pod)["infra"]["pid"].get<int>();
    ASSERT_GT(pid, 0);

    const auto main_pid = unit_property("crisd.service", "MainPID");
    must("systemctl kill -s KILL crisd.service");
    for (int i = 0; i < 100 && unit_property("crisd.service", "MainPID") == main_pid; ++i) ::usleep(50000);
    sh("systemctl reset-failed crisd.service");
    reconnect();
    EXPECT_EQ(pod_state(*client_, pod), v1::SANDBOX_READY);  // starts crisd again through the socket
    EXPECT_EQ(pod_info(*client_, pod)["infra"]["pid"].get<int>(), pid);
    EXPECT_EQ(sh("kill -0 " + std::to_string(pid)).exit_code, 0) << "crisd-pause kept running";
    EXPECT_EQ(unit_property("crisd-" + pod + ".scope", "ActiveState"), "active");
    EXPECT_EQ(exec(id, "tr '\\0' ' ' < /proc/1/cmdline").stdout(), "/pause ");
    // A new container joins it after the restart.
    const auto late = create(pod, shared(container_config("late", "tr '\\0' ' ' < /proc/1/cmdline; echo")));
    start(late);
    ASSERT_TRUE(wait_exited(late));
    EXPECT_NE(log_of("infra-restart", "late").find(" /pause "), std::string::npos) << log_of("infra-restart", "late");

    // PID 1 of the namespace dies: the kernel ends the containers, the pod is not ready.
    must("kill -9 " + std::to_string(pid));
    EXPECT_TRUE(wait_for([&] { return pod_state(*client_, pod) == v1::SANDBOX_NOTREADY; }, 10s));
    EXPECT_TRUE(wait_exited(id, 10s));
    v1::PodSandboxFilter f;
    f.mutable_state()->set_state(v1::SANDBOX_READY);
    v1::ListPodSandboxRequest lreq;
    *lreq.mutable_filter() = f;
    const auto ready = client_->call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", lreq);
    for (const auto& p : ready.items()) EXPECT_NE(p.id(), pod) << "listed as ready";
    EXPECT_EQ(try_create(pod, shared(container_config("x", "true"))).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
    // Still not ready after another restart; removal cleans up.
    must("systemctl restart crisd.service");
    reconnect();
    EXPECT_EQ(pod_state(*client_, pod), v1::SANDBOX_NOTREADY);
    v1::RemovePodSandboxRequest rm;
    rm.set_pod_sandbox_id(pod);
    client_->call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm);
    expect_no_units_of(pod);
    expect_gone(id);
}

// A failure while the infra container starts (here: the handler's runtime
// refuses `create`) is a clear error and leaves nothing: no record, no mount,
// no scope. A second crisd with such a handler, on its own socket and dirs.
TEST(InfraFaults, FailedStartLeavesNothing) {
    sh("systemctl stop crisd-infra-fault 2>/dev/null; systemctl reset-failed crisd-infra-fault 2>/dev/null; "
       "rm -rf /tmp/infra-faults");
    must("mkdir -p /tmp/infra-faults/none /tmp/infra-faults/fake-root");
    std::ofstream("/tmp/infra-faults/fake-runtime")
        << "#!/bin/sh\ncase \" $* \" in *\" create \"*) echo 'fake runtime: create refused for the test' >&2; exit 1;; esac\n"
           "exit 0\n";
    must("chmod 755 /tmp/infra-faults/fake-runtime");
    std::ofstream("/tmp/infra-faults/crisd.conf")
        << "[crisd.runtime.runtimes.broken]\nruntime_path = \"/tmp/infra-faults/fake-runtime\"\n"
           "runtime_root = \"/tmp/infra-faults/fake-root\"\n"
           "[crisd.runtime.runtimes.missing]\nruntime_path = \"/tmp/infra-faults/no-such-runtime\"\n"
           "runtime_root = \"/tmp/infra-faults/fake-root\"\n";
    must("systemd-run --unit=crisd-infra-fault /usr/bin/crisd --config /tmp/infra-faults/crisd.conf "
         "--config-dir /tmp/infra-faults/none --listen /tmp/infra-faults/crisd.sock --root /tmp/infra-faults/root "
         "--runroot /tmp/infra-faults/run");
    for (int i = 0; i < 100 && sh("test -S /tmp/infra-faults/crisd.sock").exit_code != 0; ++i)
        std::this_thread::sleep_for(100ms);
    CriClient c("/tmp/infra-faults/crisd.sock", std::chrono::seconds(60));
    const auto units_before = sh("systemctl list-units --all --no-legend 'crisd-*' | sort").out;

    for (const char* handler : {"broken", "missing"}) {
        v1::RunPodSandboxRequest req;
        *req.mutable_config() = pod_config(std::string("fault-") + handler);
        auto* ns = req.mutable_config()->mutable_linux()->mutable_security_context()->mutable_namespace_options();
        ns->set_pid(v1::POD);
        ns->set_network(v1::NODE);  // no CNI for this crisd; IPC and UTS are the pod's
        req.set_runtime_handler(handler);
        v1::RunPodSandboxResponse resp;
        const auto st = c.try_call(&v1::RuntimeService::Stub::RunPodSandbox, req, &resp);
        EXPECT_FALSE(st.ok()) << handler;
        if (std::string(handler) == "broken") {
            EXPECT_NE(st.error_message().find("fake runtime: create refused for the test"), std::string::npos)
                << st.error_message();
            EXPECT_NE(st.error_message().find("infra container"), std::string::npos) << st.error_message();
        } else {
            EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
        }
    }
    EXPECT_EQ(sh("ls -A /tmp/infra-faults/root/pods /tmp/infra-faults/run/pods /tmp/infra-faults/run/ns "
                 "/tmp/infra-faults/run/exits").out,
              "/tmp/infra-faults/root/pods:\n\n/tmp/infra-faults/run/exits:\n\n/tmp/infra-faults/run/ns:\n\n"
              "/tmp/infra-faults/run/pods:\n");
    EXPECT_EQ(sh("findmnt -rn -o TARGET | grep -c /tmp/infra-faults").out, "0\n");
    EXPECT_EQ(sh("systemctl list-units --all --no-legend 'crisd-*' | sort").out, units_before);
    v1::ListPodSandboxRequest lreq;
    EXPECT_EQ(c.call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", lreq).items_size(), 0);
    // The name is free again: a pod of the same name without PID sharing runs.
    v1::RunPodSandboxRequest ok;
    *ok.mutable_config() = pod_config("fault-broken");
    ok.mutable_config()->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(v1::NODE);
    const auto id = c.call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", ok).pod_sandbox_id();
    v1::RemovePodSandboxRequest rm;
    rm.set_pod_sandbox_id(id);
    c.call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm);
    sh("systemctl stop crisd-infra-fault; systemctl reset-failed crisd-infra-fault 2>/dev/null; rm -rf /tmp/infra-faults");
}

// crisd-conmon killed (as by the OOM killer in the pod's slice): the
// container is EXITED within a second or two, what ran in it is killed, and
// Stop and Remove do not wait out their timeouts.
TEST_F(Containers, AContainerWhoseConmonDiesIsExitedAtOnce) {
    const auto id = run_container("conmon-dies", container_config("main", "exec sleep 1006"));
    v1::ContainerStatusRequest req;
    req.set_container_id(id);
    req.set_verbose(true);
    const auto info = nlohmann::json::parse(
        client_->call(&v1::RuntimeService::Stub::ContainerStatus, "ContainerStatus", req).info().at("info"));
    const int conmon = info["monitor_pid"].get<int>();
    const int pid = info["pid"].get<int>();
    ASSERT_GT(conmon, 0);
    ASSERT_EQ(status(id).state(), v1::CONTAINER_RUNNING);
    const auto killed = std::chrono::steady_clock::now();
    must("kill -9 " + std::to_string(conmon));
    ASSERT_TRUE(wait_exited(id, 5s));
    EXPECT_LT(std::chrono::steady_clock::now() - killed, 4000ms);  // at once: without the pidfd it never ends
    const auto st = status(id);
    EXPECT_EQ(st.exit_code(), 255);
    EXPECT_EQ(st.reason(), "Error");
    EXPECT_NE(st.message().find("crisd-conmon"), std::string::npos) << st.message();
    EXPECT_TRUE(wait_for([&] { return sh("kill -0 " + std::to_string(pid)).exit_code != 0; }, 5s))
        << "the container's process outlived its conmon";
    const auto t = std::chrono::steady_clock::now();
    stop(id, 30);
    remove(id);
    EXPECT_LT(std::chrono::steady_clock::now() - t, 5s);
    expect_gone(id);
}

// The kubelet takes at most 16 MiB per gRPC message: stdout and stderr
// together are cut to fit, first come first kept.
TEST_F(Containers, ExecSyncOutputFitsTheKubeletsMessageLimit) {
    const auto id = run_container("exec-big", container_config("main", "exec sleep 1007"));
    const auto r = exec(id,
                        "dd if=/dev/zero bs=1048576 count=12 2>/dev/null; "
                        "(dd if=/dev/zero bs=1048576 count=12 2>/dev/null) >&2; exit 4");
    EXPECT_EQ(r.exit_code(), 4);
    EXPECT_LE(r.ByteSizeLong(), 16u * 1024 * 1024) << "the kubelet would get RESOURCE_EXHAUSTED";
    EXPECT_EQ(r.stdout().size(), 12u * 1024 * 1024);
    EXPECT_GT(r.stderr().size(), 3u * 1024 * 1024);
    EXPECT_LT(r.stdout().size() + r.stderr().size(), 16u * 1024 * 1024);
    // Small output is whole.
    const auto small = exec(id, "echo out; echo err >&2");
    EXPECT_EQ(small.stdout(), "out\n");
    EXPECT_EQ(small.stderr(), "err\n");
}

// The writable layer in ContainerStats, ListContainerStats and
// PodSandboxStats: what the container wrote, on the container file system
// ImageFsInfo names.
TEST_F(Containers, StatsReportTheWritableLayer) {
    const auto pod = run_pod("writable");
    const auto id = create(pod, container_config("main", "dd if=/dev/zero of=/data bs=1048576 count=3; sleep 1008"));
    start(id);
    ASSERT_TRUE(wait_for([&] { return exec(id, "ls -l /data").stdout().find("3145728") != std::string::npos; }, 10s));
    v1::ContainerStatsRequest req;
    req.set_container_id(id);
    v1::ContainerStats s;
    // Measured at most every few seconds: the first look may predate the write.
    EXPECT_TRUE(wait_for([&] {
        s = client_->call(&v1::RuntimeService::Stub::ContainerStats, "ContainerStats", req).stats();
        return s.writable_layer().used_bytes().value() >= 3u * 1024 * 1024;
    }, 10s)) << s.DebugString();
    EXPECT_GE(s.writable_layer().inodes_used().value(), 1u);
    EXPECT_EQ(s.writable_layer().fs_id().mountpoint(), "/var/lib/crisd/rootfs");
    EXPECT_GT(s.writable_layer().timestamp(), 0);
    v1::ImageFsInfoResponse fs = client_->call(&v1::ImageService::Stub::ImageFsInfo, "ImageFsInfo", v1::ImageFsInfoRequest());
    ASSERT_EQ(fs.container_filesystems_size(), 1);
    EXPECT_EQ(fs.container_filesystems(0).fs_id().mountpoint(), s.writable_layer().fs_id().mountpoint());

    v1::ListContainerStatsRequest lreq;
    lreq.mutable_filter()->set_id(id);
    const auto all = client_->call(&v1::RuntimeService::Stub::ListContainerStats, "ListContainerStats", lreq);
    ASSERT_EQ(all.stats_size(), 1);
    EXPECT_GE(all.stats(0).writable_layer().used_bytes().value(), 3u * 1024 * 1024);
    v1::PodSandboxStatsRequest preq;
    preq.set_pod_sandbox_id(pod);
    const auto ps = client_->call(&v1::RuntimeService::Stub::PodSandboxStats, "PodSandboxStats", preq).stats();
    ASSERT_EQ(ps.linux().containers_size(), 1);
    EXPECT_GE(ps.linux().containers(0).writable_layer().used_bytes().value(), 3u * 1024 * 1024);
}

// The kubelet's evented PLEG: with a timestamp, PodSandboxStatus is all it
// reads of the pod's containers, and the pod events carry them too.
TEST_F(Containers, PodStatusAndPodEventsCarryTheContainers) {
    const auto pod = run_pod("pleg");
    const auto a = create(pod, container_config("a", "exec sleep 1009"));
    start(a);
    const auto b = create(pod, container_config("b", "exit 0"));
    const auto before = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(pod);
    const auto resp = client_->call(&v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", req);
    const auto after = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    EXPECT_GE(resp.timestamp(), before) << "nanoseconds since the epoch";
    EXPECT_LE(resp.timestamp(), after);
    std::map<std::string, v1::ContainerStatus> byid;
    for (const auto& c : resp.containers_statuses()) byid[c.id()] = c;
    ASSERT_EQ(byid.size(), 2u) << resp.DebugString();
    EXPECT_EQ(byid[a].state(), v1::CONTAINER_RUNNING);
    EXPECT_EQ(byid[a].metadata().name(), "a");
    EXPECT_EQ(byid[a].image_ref(), status(a).image_ref());
    EXPECT_EQ(byid[b].state(), v1::CONTAINER_CREATED);
    EXPECT_EQ(byid[b].log_path(), status(b).log_path());

    auto ctx = client_->context();
    auto reader = client_->runtime().GetContainerEvents(ctx.get(), v1::GetEventsRequest());
    ::usleep(300000);  // subscribed
    v1::StopPodSandboxRequest stop_req;
    stop_req.set_pod_sandbox_id(pod);
    client_->call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop_req);
    v1::ContainerEventResponse e;
    bool seen = false;
    while (!seen && reader->Read(&e)) {
        if (e.container_id() != pod || e.container_event_type() != v1::CONTAINER_STOPPED_EVENT) continue;
        seen = true;
        EXPECT_EQ(e.pod_sandbox_status().state(), v1::SANDBOX_NOTREADY);
        std::map<std::string, v1::ContainerStatus> ev;
        for (const auto& c : e.containers_statuses()) ev[c.id()] = c;
        ASSERT_EQ(ev.size(), 2u) << e.DebugString();
        EXPECT_EQ(ev[a].state(), v1::CONTAINER_EXITED) << "stopped with the pod";
    }
    ctx->TryCancel();
    EXPECT_TRUE(seen);
}

// With a PID namespace it does not own, a container's first process can end
// while what it started runs on; StopContainer ends that too.
TEST_F(Infra, StoppingAnExitedContainerKillsWhatItLeftInTheSharedPidNamespace) {
    const auto pod = run_shared_pid_pod("leftovers");
    const auto id = create(pod, shared(container_config("main", "sleep 1010 & exit 0")));
    start(id);
    ASSERT_TRUE(wait_exited(id));
    EXPECT_EQ(status(id).exit_code(), 0);
    ASSERT_EQ(sh("pgrep -f '^sleep 1010$'").exit_code, 0) << "its child runs on, reparented to crisd-pause";
    stop(id, 10);
    EXPECT_TRUE(wait_for([&] { return sh("pgrep -f '^sleep 1010$'").exit_code != 0; }, 5s))
        << sh("ps -eo pid,args | grep 'sleep 1010'").out;
}
