// crisd-conmon against the node's real runc/crun, systemd and journald, driven
// through crisd's own client (src/monitor/monitor.hpp), as crisd will drive it.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "monitor/monitor.hpp"
#include "node_test.hpp"

using namespace crisd;
using namespace crisd::node;
using namespace std::chrono_literals;

namespace {

const std::string kBase = "/run/crisd-conmon-test";
// The installed one; $CRISD_CONMON points at another build while iterating.
const std::string kConmon = std::getenv("CRISD_CONMON") ? std::getenv("CRISD_CONMON") : "/usr/libexec/crisd/crisd-conmon";

std::string random_id() {
    static std::mt19937_64 rng(std::random_device{}());
    std::string id;
    const char* hex = "0123456789abcdef";
    for (int i = 0; i < 64; ++i) id += hex[rng() % 16];
    return id;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return cond();
}

std::string runtime_path(const std::string& rt) { return rt == "crun" ? "/usr/bin/crun" : "/usr/sbin/runc"; }

struct BundleOptions {
    std::string command;  // for sh -c
    bool terminal = false;
    int64_t memory_limit = 0;
};

// One container under one crisd-conmon, the way crisd will run it.
class Container {
public:
    Container(const std::string& runtime, const BundleOptions& b, bool with_stdin = false, bool stdin_once = false)
        : runtime_(runtime), id_(random_id()) {
        dir_ = kBase + "/" + id_.substr(0, 12);
        must("rm -rf " + dir_ + " && mkdir -p " + dir_ + "/rootfs/bin " + dir_ + "/exits " + dir_ + "/sock " +
             kBase + "/" + runtime + "-root && cp /bin/busybox " + dir_ + "/rootfs/bin/ && for a in $(/bin/busybox --list | grep -vx busybox); do ln -sf busybox " + dir_ +
             "/rootfs/bin/$a; done && cd " + dir_ + " && " + runtime_path(runtime) +
             " spec");
        std::string jq = ".process.args = [\"sh\", \"-c\", " + json(b.command) + "] | .process.terminal = " +
                         (b.terminal ? "true" : "false") + " | .root.readonly = false";
        if (b.memory_limit > 0)
            jq += " | .linux.resources.memory = {\"limit\": " + std::to_string(b.memory_limit) +
                  ", \"swap\": " + std::to_string(b.memory_limit) + "}";
        must("cd " + dir_ + " && jq " + quote(jq) + " config.json > c.json && mv c.json config.json");
        cfg.conmon_path = kConmon;
        cfg.id = id_;
        cfg.name = "ctr-" + id_.substr(0, 6);
        cfg.pod_name = "pod-" + id_.substr(0, 6);
        cfg.pod_namespace = "conmon-test";
        cfg.bundle = dir_;
        cfg.runtime_path = runtime_path(runtime);
        cfg.runtime_args = {"--root", kBase + "/" + runtime + "-root"};
        cfg.log_path = dir_ + "/ctr.log";
        cfg.exit_dir = dir_ + "/exits";
        cfg.socket_dir = dir_ + "/sock";
        cfg.terminal = b.terminal;
        cfg.stdin = with_stdin;
        cfg.stdin_once = stdin_once;
    }
    ~Container() {
        if (launch_ && launch_->monitor_pid() > 0 && !exited_) ::kill(launch_->monitor_pid(), SIGKILL);
        sh(runtime_path(runtime_) + " --root " + kBase + "/" + runtime_ + "-root delete -f " + id_);
        sh("systemctl stop " + scope() + " 2>/dev/null");
        if (!::testing::Test::HasFailure()) sh("rm -rf " + dir_);
    }

    // Spawn, move conmon into crisd-conmon-<id>.scope (as crisd does over
    // D-Bus), release, wait for the pid. Throws what wait_created throws.
    pid_t create() {
        launch_.emplace(monitor::Launch::spawn(cfg));
        must("busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager "
             "StartTransientUnit 'ssa(sv)a(sa(sv))' " + scope() + " fail 1 PIDs au 1 " +
             std::to_string(launch_->monitor_pid()) + " 0");
        // The move is a job; crisd waits for it (JobRemoved) before release.
        const auto cgroup = "/proc/" + std::to_string(launch_->monitor_pid()) + "/cgroup";
        EXPECT_TRUE(wait_for([&] { return slurp(cgroup).find(scope()) != std::string::npos; }, 10s))
            << "conmon did not get into " << scope();
        launch_->release();
        pid_ = launch_->wait_created(30s);
        return pid_;
    }
    void start() { monitor::start(cfg.socket_dir, 30s); }
    std::optional<monitor::ExitStatus> wait_exit(std::chrono::milliseconds timeout = 30s) {
        monitor::ExitWatcher w(cfg.exit_dir);
        auto s = w.wait(id_, timeout);
        if (s) exited_ = true;
        return s;
    }
    bool monitor_alive() const { return ::kill(monitor_pid(), 0) == 0; }
    pid_t monitor_pid() const { return launch_ ? launch_->monitor_pid() : -1; }
    std::string scope() const { return "crisd-conmon-" + id_ + ".scope"; }
    std::string log() const { return slurp(cfg.log_path); }
    std::string rt_cmd(const std::string& args) const {
        return runtime_path(runtime_) + " --root " + kBase + "/" + runtime_ + "-root " + args;
    }
    const std::string& id() const { return id_; }
    pid_t pid() const { return pid_; }
    const std::string& dir() const { return dir_; }

    monitor::Config cfg;

private:
    static std::string json(const std::string& s) {
        std::string out = "\"";
        for (char c : s) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        return out + "\"";
    }
    std::string runtime_, id_, dir_;
    std::optional<monitor::Launch> launch_;
    pid_t pid_ = -1;
    bool exited_ = false;
};

// Reads attach packets until `want` appears in the stream of the given kind, or timeout.
std::string read_attach(int fd, const std::string& want, std::chrono::milliseconds timeout, uint8_t stream = 1) {
    std::string got;
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (got.find(want) == std::string::npos && std::chrono::steady_clock::now() < end) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char buf[65536];
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (static_cast<uint8_t>(buf[0]) == stream) got.append(buf + 1, static_cast<size_t>(n - 1));
    }
    return got;
}

class ConmonRuntimes : public ::testing::TestWithParam<std::string> {};

TEST_P(ConmonRuntimes, ExitCodeLogAndExitFile) {
    Container c(GetParam(), {"echo out-line; echo err-line >&2; printf 'no newline'; exit 3"});
    const pid_t pid = c.create();
    EXPECT_GT(pid, 0);
    EXPECT_TRUE(c.monitor_alive());
    c.start();
    const auto s = c.wait_exit();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->exit_code, 3);
    EXPECT_EQ(s->signal, 0);
    EXPECT_FALSE(s->oom_killed);
    EXPECT_GT(s->exited_at_ns, 0);
    const auto log = c.log();
    EXPECT_NE(log.find(" stdout F out-line\n"), std::string::npos) << log;
    EXPECT_NE(log.find(" stderr F err-line\n"), std::string::npos) << log;
    EXPECT_NE(log.find(" stdout P no newline\n"), std::string::npos) << log;
    EXPECT_TRUE(wait_for([&] { return !c.monitor_alive(); }, 5s)) << "crisd-conmon did not exit after the container";
}

INSTANTIATE_TEST_SUITE_P(Runtimes, ConmonRuntimes, ::testing::Values("runc", "crun"));

TEST(Conmon, KilledBySignalIs128PlusN) {
    Container c("runc", {"sleep 1000"});
    c.create();
    c.start();
    must(c.rt_cmd("kill " + c.id() + " KILL"));
    const auto s = c.wait_exit();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->exit_code, 137);
    EXPECT_EQ(s->signal, 9);
    EXPECT_FALSE(s->oom_killed);
}

TEST(Conmon, OomKillIsReported) {
    BundleOptions b{"exec dd if=/dev/zero of=/dev/null bs=128M count=1"};
    b.memory_limit = 32 * 1024 * 1024;
    Container c("runc", b);
    c.create();
    c.start();
    const auto s = c.wait_exit();
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->oom_killed) << "exit code " << s->exit_code << "; log:\n" << c.log();
    EXPECT_EQ(s->exit_code, 137);
    EXPECT_EQ(s->signal, 9);
}

TEST(Conmon, RuntimeErrorComesBackWordForWord) {
    Container c("runc", {"true"});
    must("rm " + c.dir() + "/config.json");
    std::string got;
    try {
        c.create();
        ADD_FAILURE() << "create succeeded without config.json";
    } catch (const monitor::RuntimeError& e) {
        got = e.what();
    }
    // The same runtime, run by hand on the same bundle, says the same (runc's
    // logrus lines carry a time= field; compare what follows it).
    auto direct = sh("cd / && " + c.rt_cmd("create --bundle " + c.dir() + " x" + c.id().substr(0, 8)) +
                     " 2>&1 >/dev/null").out;
    while (!direct.empty() && direct.back() == '\n') direct.pop_back();
    const auto strip_time = [](std::string s) {
        const auto lvl = s.find("level=");
        return lvl == std::string::npos ? s : s.substr(lvl);
    };
    EXPECT_NE(got.find("config.json"), std::string::npos) << got;
    EXPECT_EQ(strip_time(got), strip_time(direct));
    EXPECT_TRUE(wait_for([&] { return !c.monitor_alive(); }, 5s));
}

TEST(Conmon, CrunErrorComesBackWordForWord) {
    Container c("crun", {"true"});
    must("rm " + c.dir() + "/config.json");
    std::string got;
    try {
        c.create();
        ADD_FAILURE() << "create succeeded without config.json";
    } catch (const monitor::RuntimeError& e) {
        got = e.what();
    }
    auto direct = sh("cd / && " + c.rt_cmd("create --bundle " + c.dir() + " x" + c.id().substr(0, 8)) +
                     " 2>&1 >/dev/null").out;
    while (!direct.empty() && direct.back() == '\n') direct.pop_back();
    EXPECT_EQ(got, direct);
}

TEST(Conmon, TerminalWithResize) {
    BundleOptions b{"tty; stty size; echo tty-done"};
    b.terminal = true;
    Container c("runc", b);
    c.create();
    monitor::resize(c.cfg.socket_dir, 33, 101);
    c.start();
    const auto s = c.wait_exit();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->exit_code, 0);
    const auto log = c.log();
    EXPECT_NE(log.find(" stdout F /dev/pts/0\r\n"), std::string::npos) << log;
    EXPECT_NE(log.find(" stdout F 33 101\r\n"), std::string::npos) << log;
    EXPECT_NE(log.find("tty-done"), std::string::npos) << log;
}

TEST(Conmon, AttachReadsOutputAndWritesStdin) {
    Container c("runc", {"read a; echo got:$a; read b; echo got2:$b >&2; echo done"}, /*stdin=*/true);
    c.create();
    auto one = monitor::attach(c.cfg.socket_dir);
    auto two = monitor::attach(c.cfg.socket_dir);
    c.start();
    ASSERT_EQ(::send(one.get(), "hello\n", 6, 0), 6);
    EXPECT_NE(read_attach(one.get(), "got:hello\n", 10s).find("got:hello\n"), std::string::npos);
    EXPECT_NE(read_attach(two.get(), "got:hello\n", 10s).find("got:hello\n"), std::string::npos);
    // The stdin owner detaches: the container goes on; the other client takes stdin.
    one.reset();
    std::this_thread::sleep_for(200ms);
    EXPECT_TRUE(c.monitor_alive());
    ASSERT_EQ(::send(two.get(), "bye\n", 4, 0), 4);
    EXPECT_NE(read_attach(two.get(), "got2:bye\n", 10s, 2).find("got2:bye\n"), std::string::npos);
    const auto s = c.wait_exit();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->exit_code, 0);
    // conmon closes attach clients when the container is gone.
    char buf[16];
    pollfd p{two.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    while (::recv(two.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    EXPECT_EQ(::recv(two.get(), buf, sizeof buf, 0), 0);
}

TEST(Conmon, StdinOnceClosesStdinWhenTheClientDetaches) {
    Container c("runc", {"cat; echo cat-ended"}, /*stdin=*/true, /*stdin_once=*/true);
    c.create();
    auto a = monitor::attach(c.cfg.socket_dir);
    c.start();
    ASSERT_EQ(::send(a.get(), "line\n", 5, 0), 5);
    EXPECT_NE(read_attach(a.get(), "line\n", 10s).find("line\n"), std::string::npos);
    a.reset();
    const auto s = c.wait_exit(10s);
    ASSERT_TRUE(s) << "cat did not see EOF";
    EXPECT_EQ(s->exit_code, 0);
    EXPECT_NE(c.log().find("cat-ended"), std::string::npos);
}

TEST(Conmon, LogReopenOnSigusr1AndRequest) {
    Container c("runc", {"i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done"});
    c.create();
    c.start();
    ASSERT_TRUE(wait_for([&] { return c.log().find("tick-2") != std::string::npos; }, 10s));
    must("mv " + c.cfg.log_path + " " + c.cfg.log_path + ".1");
    ::kill(c.monitor_pid(), SIGUSR1);
    EXPECT_TRUE(wait_for([&] { return c.log().find(" stdout F tick-") != std::string::npos; }, 10s))
        << "no new log file after SIGUSR1";
    must("mv " + c.cfg.log_path + " " + c.cfg.log_path + ".2");
    monitor::reopen_log(c.cfg.socket_dir);
    EXPECT_TRUE(wait_for([&] { return c.log().find(" stdout F tick-") != std::string::npos; }, 10s))
        << "no new log file after the reopen request";
    must(c.rt_cmd("kill " + c.id() + " KILL"));
    ASSERT_TRUE(c.wait_exit());
}

TEST(Conmon, JournalShowsLinesUnderTheContainerScope) {
    const std::string marker = "journal-" + random_id().substr(0, 8);
    Container c("runc", {"echo " + marker + "-out; echo " + marker + "-err >&2"});
    c.create();
    c.start();
    ASSERT_TRUE(c.wait_exit());
    const std::string unit = "crisd-" + c.id() + ".scope";
    std::string out;
    wait_for([&] {
        out = sh("journalctl --no-pager -u " + unit + " -o json").out;
        return out.find(marker + "-err") != std::string::npos;
    }, 10s);
    // stdout and stderr are separate pipes: their relative order is not fixed.
    const auto lines = sh("journalctl --no-pager -u " + unit + " -o cat | sort").out;
    EXPECT_EQ(lines, marker + "-err\n" + marker + "-out\n");
    // The fields, by matching on each of them.
    const auto match = [&](const std::string& m) {
        return sh("journalctl --no-pager -o cat " + m + " MESSAGE=" + marker + "-out").out;
    };
    EXPECT_EQ(match("CONTAINER_ID=" + c.id().substr(0, 12)), marker + "-out\n");
    EXPECT_EQ(match("CONTAINER_ID_FULL=" + c.id()), marker + "-out\n");
    EXPECT_EQ(match("CONTAINER_NAME=" + c.cfg.name), marker + "-out\n");
    EXPECT_EQ(match("POD_NAME=" + c.cfg.pod_name), marker + "-out\n");
    EXPECT_EQ(match("POD_NAMESPACE=conmon-test"), marker + "-out\n");
    EXPECT_EQ(match("SYSLOG_IDENTIFIER=" + c.cfg.name), marker + "-out\n");
    EXPECT_EQ(match("PRIORITY=6"), marker + "-out\n");
    EXPECT_EQ(sh("journalctl --no-pager -o cat PRIORITY=3 MESSAGE=" + marker + "-err").out, marker + "-err\n");
    // Sent from conmon's own scope; journalctl -u matches OBJECT_SYSTEMD_UNIT because the sender is root.
    EXPECT_EQ(match("_SYSTEMD_UNIT=" + c.scope()), marker + "-out\n");
    EXPECT_EQ(match("_UID=0"), marker + "-out\n");
}

TEST(Conmon, ExecSyncCapturesExitCodeOutputAndTimesOut) {
    Container c("runc", {"sleep 1000"});
    c.create();
    c.start();
    auto r = monitor::exec_sync(c.cfg.socket_dir, {"sh", "-c", "echo exec-out; echo exec-err >&2; exit 7"}, 10s);
    EXPECT_EQ(r.exit_code, 7);
    EXPECT_EQ(r.out, "exec-out\n");
    EXPECT_EQ(r.err, "exec-err\n");
    EXPECT_FALSE(r.timed_out);

    // Joins the container's cgroup (no scope of its own).
    r = monitor::exec_sync(c.cfg.socket_dir, {"grep", ":memory:", "/proc/self/cgroup"}, 10s);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, sh("grep :memory: /proc/" + std::to_string(c.pid()) + "/cgroup").out);

    const auto t0 = std::chrono::steady_clock::now();
    r = monitor::exec_sync(c.cfg.socket_dir, {"sleep", "30"}, 500ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(r.exit_code, 137);
    EXPECT_LT(took, 5s);
    EXPECT_EQ(sh(c.rt_cmd("exec " + c.id() + " sh -c 'cat /proc/[0-9]*/comm | grep -cx sleep'")).out, "1\n")
        << "the timed-out sleep is still there (the other one is the container's init)";

    r = monitor::exec_sync(c.cfg.socket_dir, {"head", "-c", "100000", "/dev/zero"}, 10s, 1000);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out.size(), 1000u);

    r = monitor::exec_sync(c.cfg.socket_dir, {"/no/such/binary"}, 10s);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("/no/such/binary"), std::string::npos) << r.err;
    EXPECT_TRUE(c.monitor_alive());
    must(c.rt_cmd("kill " + c.id() + " KILL"));
    ASSERT_TRUE(c.wait_exit());
}

TEST(Conmon, OutlivesItsStarterAndIsReparented) {
    Container c("runc", {"read x; echo late-$x"}, /*stdin=*/true);
    c.create();
    c.start();
    // Double fork and setsid: conmon's parent is the node's systemd, in another session.
    const auto stat = slurp("/proc/" + std::to_string(c.monitor_pid()) + "/stat");
    std::istringstream ss(stat.substr(stat.rfind(')') + 2));
    std::string state;
    pid_t ppid = 0, pgrp = 0, session = 0;
    ss >> state >> ppid >> pgrp >> session;
    EXPECT_EQ(ppid, 1);
    EXPECT_NE(session, ::getsid(0));
    EXPECT_NE(session, c.monitor_pid()) << "conmon must not be a session leader";
    // In its scope, and so is nothing of crisd's.
    EXPECT_NE(slurp("/proc/" + std::to_string(c.monitor_pid()) + "/cgroup").find(c.scope()), std::string::npos);
    // "crisd restarts": a new client, with nothing but the socket dir and exit dir, attaches and sees the exit.
    auto a = monitor::attach(c.cfg.socket_dir);
    ASSERT_EQ(::send(a.get(), "ok\n", 3, 0), 3);
    EXPECT_NE(read_attach(a.get(), "late-ok", 10s).find("late-ok"), std::string::npos);
    const auto s = c.wait_exit();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->exit_code, 0);
}

// "crisd" (a forked child here) starts the container and dies; the container,
// its monitor, attach and the exit file carry on without it, and SIGTERM (what
// stopping the monitor's scope sends first) does not take the monitor down.
TEST(Conmon, ContainerSurvivesTheDeathOfItsCrisd) {
    Container c("runc", {"read x; echo after-crisd-$x; exit 4"}, /*stdin=*/true);
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const pid_t crisd = ::fork();
    ASSERT_GE(crisd, 0);
    if (crisd == 0) {
        ::close(p[0]);
        int code = 1;
        try {
            auto l = monitor::Launch::spawn(c.cfg);
            const auto pid = std::to_string(l.monitor_pid());
            l.release();
            l.wait_created(30s);
            monitor::start(c.cfg.socket_dir, 30s);
            code = ::write(p[1], pid.data(), pid.size()) > 0 ? 0 : 1;
        } catch (...) {
        }
        ::_exit(code);  // crisd goes away without a word
    }
    ::close(p[1]);
    char buf[32] = {};
    const auto n = ::read(p[0], buf, sizeof buf - 1);
    ::close(p[0]);
    int st = 0;
    ::waitpid(crisd, &st, 0);
    ASSERT_GT(n, 0) << "the child could not start the container";
    const pid_t monitor = std::atoi(buf);
    ASSERT_GT(monitor, 0);
    EXPECT_EQ(::kill(monitor, 0), 0) << "crisd-conmon died with its crisd";
    ::kill(monitor, SIGTERM);
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(::kill(monitor, 0), 0) << "crisd-conmon did not survive SIGTERM";
    // A new crisd: nothing but the socket and exit directories.
    monitor::ExitWatcher w(c.cfg.exit_dir);
    auto a = monitor::attach(c.cfg.socket_dir);
    ASSERT_EQ(::send(a.get(), "yes\n", 4, 0), 4);
    EXPECT_NE(read_attach(a.get(), "after-crisd-yes", 10s).find("after-crisd-yes"), std::string::npos);
    const auto s = w.wait(c.id(), 30s);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->exit_code, 4);
    EXPECT_TRUE(wait_for([&] { return ::kill(monitor, 0) != 0; }, 10s));
    EXPECT_NE(c.log().find(" stdout F after-crisd-yes\n"), std::string::npos) << c.log();
}

TEST(Conmon, NegativeOomScoreAdjIsClampedOnce) {
    Container c("runc", {"sleep 1000"});
    c.cfg.oom_score_adj = -999;
    c.create();
    const auto adj = slurp("/proc/" + std::to_string(c.monitor_pid()) + "/oom_score_adj");
    const bool have_cap = sh("capsh --has-p=cap_sys_resource 2>/dev/null").exit_code == 0;
    if (adj == "0\n") {
        EXPECT_TRUE(wait_for([&] {
            return sh("journalctl --no-pager -o cat -t crisd-conmon CONTAINER_ID_FULL=" + c.id()).out.find(
                       "oom_score_adj -999 refused") != std::string::npos;
        }, 5s));
    } else {
        EXPECT_EQ(adj, "-999\n") << "have CAP_SYS_RESOURCE: " << have_cap;
    }
    must(c.rt_cmd("kill " + c.id() + " KILL"));
}

}  // namespace
