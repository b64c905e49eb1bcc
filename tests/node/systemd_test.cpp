// src/systemd against the node's real systemd (v252, hybrid cgroup layout:
// the limits must show in `systemctl show` AND in the v1 cgroup files).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <future>
#include <random>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "log/log.hpp"
#include "node_test.hpp"
#include "systemd/systemd.hpp"
#include "error_code.hpp"

using namespace crisd;
using namespace crisd::node;
using namespace std::chrono_literals;

using crisd::test::code_of;

namespace {

std::string random_hex(size_t n) {
    static std::mt19937_64 rng{std::random_device{}()};
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) s += digits[rng() % 16];
    return s;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// A child process (sleep) to put into a scope; killed and reaped at the end.
class Child {
public:
    explicit Child(int ignore_signal = 0) {
        pid_ = ::fork();
        if (pid_ == 0) {
            if (ignore_signal) ::signal(ignore_signal, SIG_IGN);  // kept across exec
            ::execl("/bin/sleep", "sleep", "1000", nullptr);
            ::_exit(127);
        }
    }
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }
    // The signal that ended it, or -1 if it still runs after `wait`.
    int reap(std::chrono::milliseconds wait) {
        const auto end = std::chrono::steady_clock::now() + wait;
        do {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
            }
            std::this_thread::sleep_for(20ms);
        } while (std::chrono::steady_clock::now() < end);
        return -1;
    }

private:
    pid_t pid_ = -1;
};

class SystemdNode : public ::testing::Test {
protected:
    void SetUp() override {
        systemd::Options opt;
        opt.job_timeout = 30s;
        m_ = systemd::make_manager(opt);
        id_ = random_hex(64);
        unit_ = "crisd-" + id_ + ".scope";
        pod_ = "kubepods-burstable-pod" + random_hex(8) + ".slice";
    }
    void TearDown() override {
        sh("systemctl stop " + quote(unit_) + " " + quote(pod_) + " 2>/dev/null");
    }

    systemd::ScopeSpec spec(pid_t pid) const {
        systemd::ScopeSpec s;
        s.name = unit_;
        s.slice = pod_;
        s.description = "crisd node test " + id_.substr(0, 12);
        s.pids = {pid};
        return s;
    }

    // /sys/fs/cgroup/<controller><ControlGroup>/<file>
    std::string cg_file(const std::string& controller, const std::string& file) {
        return read_file("/sys/fs/cgroup/" + controller + m_->control_group(unit_) + "/" + file);
    }

    std::unique_ptr<systemd::Manager> m_;
    std::string id_, unit_, pod_;
};

}  // namespace

TEST_F(SystemdNode, ScopeWithLimitsShowsThemInSystemctlAndInTheV1CgroupFiles) {
    Child child;
    auto s = spec(child.pid());
    s.resources.cpu_shares = 512;
    s.resources.cpu_quota_us = 50000;
    s.resources.cpu_period_us = 100000;
    s.resources.memory_max = 256ull << 20;
    s.resources.tasks_max = 64;
    s.resources.cpuset_cpus = "0";
    s.resources.cpuset_mems = "0";
    m_->start_scope(s);

    EXPECT_EQ(m_->unit_state(unit_).active_state, "active");
    EXPECT_EQ(unit_property(unit_, "Slice"), pod_);
    EXPECT_EQ(unit_property(unit_, "Delegate"), "yes");
    EXPECT_EQ(unit_property(unit_, "CollectMode"), "inactive-or-failed");
    EXPECT_EQ(unit_property(unit_, "Description"), s.description);
    EXPECT_EQ(unit_property(unit_, "Transient"), "yes");
    EXPECT_EQ(unit_property(unit_, "CPUShares"), "512");
    EXPECT_EQ(unit_property(unit_, "CPUQuotaPerSecUSec"), "500ms");
    EXPECT_EQ(unit_property(unit_, "CPUQuotaPeriodUSec"), "100ms");
    EXPECT_EQ(unit_property(unit_, "MemoryMax"), std::to_string(256 << 20));
    EXPECT_EQ(unit_property(unit_, "TasksMax"), "64");
    EXPECT_EQ(unit_property(unit_, "AllowedCPUs"), "0");
    EXPECT_EQ(unit_property(unit_, "AllowedMemoryNodes"), "0");

    const auto cg = m_->control_group(unit_);
    EXPECT_EQ(cg, unit_property(unit_, "ControlGroup"));
    EXPECT_NE(cg.find("/kubepods.slice/kubepods-burstable.slice/" + pod_ + "/" + unit_), std::string::npos) << cg;
    EXPECT_EQ(cg_file("memory", "memory.limit_in_bytes"), std::to_string(256 << 20));
    EXPECT_EQ(cg_file("cpu", "cpu.cfs_quota_us"), "50000");
    EXPECT_EQ(cg_file("cpu", "cpu.cfs_period_us"), "100000");
    EXPECT_EQ(cg_file("cpu", "cpu.shares"), "512");
    EXPECT_EQ(cg_file("pids", "pids.max"), "64");
    EXPECT_EQ(cg_file("cpuset", "cpuset.cpus"), "0");
    EXPECT_EQ(cg_file("cpuset", "cpuset.mems"), "0");
    for (const auto& [c, f] : std::vector<std::pair<std::string, std::string>>{
             {"memory", "memory.limit_in_bytes"}, {"cpu", "cpu.cfs_quota_us"}, {"cpu", "cpu.cfs_period_us"},
             {"cpu", "cpu.shares"}, {"pids", "pids.max"}, {"cpuset", "cpuset.cpus"}, {"cpuset", "cpuset.mems"}})
        std::cout << "  " << c << cg << "/" << f << " = " << cg_file(c, f) << "\n";
    const auto pid = std::to_string(child.pid());
    for (const char* c : {"memory", "pids", "cpuset", "systemd"})
        EXPECT_EQ(cg_file(c, "cgroup.procs"), pid) << c;

    m_->stop_unit(unit_);
    EXPECT_EQ(child.reap(5s), SIGTERM);
}

TEST_F(SystemdNode, SliceIsCreatedOnceAndReused) {
    m_->ensure_slice(pod_);
    EXPECT_EQ(unit_property(pod_, "ActiveState"), "active");
    EXPECT_EQ(unit_property(pod_, "Transient"), "yes");
    EXPECT_EQ(unit_property("kubepods-burstable.slice", "ActiveState"), "active");
    EXPECT_EQ(unit_property("kubepods.slice", "ActiveState"), "active");
    const auto invocation = unit_property(pod_, "InvocationID");
    ASSERT_FALSE(invocation.empty());

    Child a, b;
    m_->start_scope(spec(a.pid()));
    auto s2 = spec(b.pid());
    s2.name = "crisd-" + random_hex(64) + ".scope";
    m_->start_scope(s2);
    m_->ensure_slice(pod_);
    // A second client (a crisd restart: no cache) finds the slice and reuses it.
    auto other = systemd::make_manager();
    other->ensure_slice(pod_);
    EXPECT_EQ(unit_property(pod_, "InvocationID"), invocation);
    const auto cg1 = m_->control_group(unit_), cg2 = m_->control_group(s2.name);
    EXPECT_EQ(cg1.substr(0, cg1.rfind('/')), cg2.substr(0, cg2.rfind('/')));
    EXPECT_EQ(unit_property(pod_, "ControlGroup"), cg1.substr(0, cg1.rfind('/')));
    m_->stop_unit(s2.name);
    m_->stop_unit(unit_);
}

TEST_F(SystemdNode, LimitsChangeAtRunTime) {
    Child child;
    auto s = spec(child.pid());
    s.resources.memory_max = 256ull << 20;
    s.resources.cpu_shares = 512;
    m_->start_scope(s);

    systemd::Resources r;
    r.memory_max = 128ull << 20;
    r.cpu_shares = 256;
    r.cpu_quota_us = 20000;
    r.cpu_period_us = 100000;
    r.tasks_max = 32;
    r.cpuset_cpus = "1";
    m_->set_properties(unit_, r);
    EXPECT_EQ(unit_property(unit_, "MemoryMax"), std::to_string(128 << 20));
    EXPECT_EQ(unit_property(unit_, "CPUShares"), "256");
    EXPECT_EQ(unit_property(unit_, "CPUQuotaPerSecUSec"), "200ms");
    EXPECT_EQ(unit_property(unit_, "TasksMax"), "32");
    EXPECT_EQ(unit_property(unit_, "AllowedCPUs"), "1");
    EXPECT_EQ(cg_file("memory", "memory.limit_in_bytes"), std::to_string(128 << 20));
    EXPECT_EQ(cg_file("cpu", "cpu.shares"), "256");
    EXPECT_EQ(cg_file("cpu", "cpu.cfs_quota_us"), "20000");
    EXPECT_EQ(cg_file("pids", "pids.max"), "32");
    EXPECT_EQ(cg_file("cpuset", "cpuset.cpus"), "1");
    EXPECT_EQ(cg_file("cpuset", "cgroup.procs"), std::to_string(child.pid()));

    systemd::Resources unlimited;
    unlimited.memory_max = systemd::kUnlimited;
    unlimited.cpu_quota_us = systemd::kUnlimited;
    unlimited.tasks_max = systemd::kUnlimited;
    m_->set_properties(unit_, unlimited);
    EXPECT_EQ(unit_property(unit_, "MemoryMax"), "infinity");
    EXPECT_EQ(unit_property(unit_, "CPUQuotaPerSecUSec"), "infinity");
    EXPECT_EQ(unit_property(unit_, "TasksMax"), "infinity");
    EXPECT_EQ(cg_file("cpu", "cpu.cfs_quota_us"), "-1");
    EXPECT_EQ(cg_file("pids", "pids.max"), "max");
    m_->stop_unit(unit_);
}

TEST_F(SystemdNode, StopWaitsForTheScopeAndIsIdempotent) {
    Child child;
    m_->start_scope(spec(child.pid()));
    m_->stop_unit(unit_);
    EXPECT_EQ(child.reap(5s), SIGTERM);
    EXPECT_EQ(code_of([&] { m_->unit_state(unit_); }), Code::NotFound) << "CollectMode=inactive-or-failed";
    EXPECT_EQ(code_of([&] { m_->stop_unit(unit_); }), Code::Ok);
    EXPECT_EQ(code_of([&] { m_->reset_failed(unit_); }), Code::Ok);
}

TEST_F(SystemdNode, KillSignalsEveryProcess) {
    Child child;
    m_->start_scope(spec(child.pid()));
    m_->kill_unit(unit_, SIGUSR1);
    EXPECT_EQ(child.reap(5s), SIGUSR1);
    EXPECT_TRUE(wait_unit_state(unit_, "inactive", 10)) << "an empty scope goes away";
    EXPECT_EQ(code_of([&] { m_->kill_unit(unit_, SIGKILL); }), Code::NotFound);
}

TEST_F(SystemdNode, MonitorScopeStopWaitsForItsProcess) {
    // The monitor ignores its scope's KillSignal: stopping the scope does not
    // take it down; the stop job finishes when it exits by itself.
    Child monitor(SIGUSR2);
    auto s = spec(monitor.pid());
    s.name = "crisd-conmon-" + id_ + ".scope";
    s.kill_signal = SIGUSR2;
    m_->start_scope(s);
    EXPECT_EQ(unit_property(s.name, "KillSignal"), std::to_string(SIGUSR2));
    auto stopping = std::async(std::launch::async, [&] { m_->stop_unit(s.name); });
    EXPECT_EQ(stopping.wait_for(1500ms), std::future_status::timeout);
    EXPECT_EQ(unit_property(s.name, "ActiveState"), "deactivating");
    EXPECT_EQ(monitor.reap(0ms), -1) << "the monitor survived its KillSignal";
    ::kill(monitor.pid(), SIGTERM);  // the monitor exits (its container is gone)
    EXPECT_EQ(stopping.wait_for(10s), std::future_status::ready);
    stopping.get();
    EXPECT_EQ(monitor.reap(5s), SIGTERM);
}

TEST_F(SystemdNode, ErrorsAreMappedByName) {
    Child child;
    m_->start_scope(spec(child.pid()));
    try {
        m_->start_scope(spec(child.pid()));
        FAIL() << "started twice";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::AlreadyExists) << e.what();
        EXPECT_NE(std::string(e.what()).find("org.freedesktop.systemd1.UnitExists"), std::string::npos) << e.what();
    }
    auto bad = spec(child.pid());
    bad.name = "crisd-" + random_hex(64) + ".scope";
    bad.slice = "kubepods--x.slice";
    EXPECT_EQ(code_of([&] { m_->start_scope(bad); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([&] { m_->unit_state("crisd-" + random_hex(64) + ".scope"); }), Code::NotFound);

    // systemd refuses a property value: InvalidArgs -> InvalidArgument.
    auto gone = spec(child.pid());
    gone.name = "crisd-" + random_hex(64) + ".scope";
    gone.pids = {0x3ffffff0};  // no such process
    const auto c = code_of([&] { m_->start_scope(gone); });
    std::cout << "  a scope of a PID that does not exist: " << code_name(c) << "\n";
    EXPECT_TRUE(c == Code::NotFound || c == Code::InvalidArgument || c == Code::Internal) << code_name(c);

    // A caller that is not root: PermissionDenied (AccessDenied or
    // InteractiveAuthorizationRequired, by name).
    const pid_t p = ::fork();
    if (p == 0) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
        auto m = systemd::make_manager();
        systemd::ScopeSpec s;
        s.name = "crisd-" + std::string(64, 'f') + ".scope";
        s.pids = {::getpid()};
        ::_exit(code_of([&] { m->start_scope(s); }) == Code::PermissionDenied ? 0 : 11);
    }
    int st = 0;
    ::waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
    m_->stop_unit(unit_);
}

TEST_F(SystemdNode, SurvivesDaemonReexec) {
    Child a;
    m_->start_scope(spec(a.pid()));
    must("systemctl daemon-reexec");
    EXPECT_EQ(m_->unit_state(unit_).active_state, "active");
    Child b;
    auto s2 = spec(b.pid());
    s2.name = "crisd-" + random_hex(64) + ".scope";
    m_->start_scope(s2);
    EXPECT_EQ(unit_property(s2.name, "ActiveState"), "active");
    m_->stop_unit(s2.name);
    m_->stop_unit(unit_);
    EXPECT_EQ(a.reap(5s), SIGTERM);
}

TEST_F(SystemdNode, SurvivesABusRestart) {
    Child a;
    m_->start_scope(spec(a.pid()));
    must("systemctl restart dbus.service");
    // systemd itself reconnects to the new bus; wait until it is back.
    ASSERT_EQ(sh("for i in $(seq 100); do busctl status org.freedesktop.systemd1 >/dev/null 2>&1 && exit 0; "
                 "sleep 0.1; done; exit 1")
                  .exit_code,
              0);
    EXPECT_EQ(m_->unit_state(unit_).active_state, "active");
    m_->stop_unit(unit_);
    EXPECT_EQ(a.reap(5s), SIGTERM);
}

TEST_F(SystemdNode, LinesAboutAContainerCarryItsJournalFields) {
    log::setup("debug", log::Target::Journal);
    Child child;
    m_->start_scope(spec(child.pid()));
    m_->stop_unit(unit_);
    log::setup("info", log::Target::Stderr);
    // journald takes the lines asynchronously; give it a moment.
    const std::string query = "journalctl --no-pager -o cat SYSLOG_IDENTIFIER=crisd CONTAINER_ID=" + id_.substr(0, 12) +
                              " CONTAINER_ID_FULL=" + id_ + " CRISD_UNIT=" + unit_;
    std::string out;
    for (int i = 0; i < 50; ++i) {
        out = sh(query).out;
        if (out.find("stopped " + unit_) != std::string::npos) break;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_NE(out.find("started " + unit_ + " in " + pod_), std::string::npos) << out;
    EXPECT_NE(out.find("stopped " + unit_), std::string::npos) << out;
}
