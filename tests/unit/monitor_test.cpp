// The crisd <-> crisd-conmon wire formats (src/monitor/protocol.hpp) and the
// client side (src/monitor/monitor.hpp) against a stand-in monitor.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.hpp"
#include "monitor/monitor.hpp"
#include "monitor/protocol.hpp"

namespace fs = std::filesystem;
using namespace crisd;
using namespace crisd::monitor;
using namespace std::chrono_literals;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/crisd-monitor-test-XXXXXX";
        path_ = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path_); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

TEST(ExitFile, RoundTrip) {
    ExitStatus s;
    s.exit_code = 137;
    s.signal = 9;
    s.oom_killed = true;
    s.exited_at_ns = 1700000000123456789;
    EXPECT_EQ(encode_exit(s), "exit_code=137\nsignal=9\noom_killed=1\nexited_at=1700000000123456789\n");
    const auto back = parse_exit(encode_exit(s));
    EXPECT_EQ(back.exit_code, 137);
    EXPECT_EQ(back.signal, 9);
    EXPECT_TRUE(back.oom_killed);
    EXPECT_EQ(back.exited_at_ns, 1700000000123456789);
}

TEST(ExitFile, UnknownKeysAreIgnoredAndBadLinesNamed) {
    EXPECT_EQ(parse_exit("exit_code=3\nfuture=x\n").exit_code, 3);
    try {
        parse_exit("exit_code=abc\n");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DataLoss);
        EXPECT_NE(std::string(e.what()).find("exit_code=abc"), std::string::npos);
    }
    EXPECT_THROW(parse_exit("signal=9\n"), Error);
    EXPECT_THROW(parse_exit("oom_killed=yes\nexit_code=1\n"), Error);
}

TEST(ExitFile, WrittenAtomicallyAndRead) {
    TempDir d;
    const std::string id(64, 'b');
    EXPECT_FALSE(read_exit_file(d.path(), id));
    ExitStatus s;
    s.exit_code = 3;
    write_exit_file(d.path(), id, s);
    EXPECT_FALSE(fs::exists(d.path() + "/." + id + ".tmp"));
    const auto r = read_exit_file(d.path(), id);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 3);
    EXPECT_FALSE(r->oom_killed);
}

TEST(ExitWatcher, SeesARenamedExitFileAndIgnoresTmp) {
    TempDir d;
    ExitWatcher w(d.path());
    const std::string id(64, 'c');
    EXPECT_TRUE(w.take().empty());
    ExitStatus s;
    s.exit_code = 0;
    write_exit_file(d.path(), id, s);
    EXPECT_EQ(w.take(), std::vector<std::string>{id});
    std::thread t([&] {
        std::this_thread::sleep_for(100ms);
        ExitStatus s2;
        s2.exit_code = 42;
        write_exit_file(d.path(), std::string(64, 'd'), s2);
    });
    const auto got = w.wait(std::string(64, 'd'), 5s);
    t.join();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->exit_code, 42);
    EXPECT_FALSE(w.wait(std::string(64, 'e'), 50ms));
}

TEST(SyncPipe, MessagesSurviveAnySplit) {
    const std::string wire = encode_sync({SyncMessage::Kind::Monitor, 42, ""}) +
                             encode_sync({SyncMessage::Kind::Error, -1, "line one\nline two\n"}) +
                             encode_sync({SyncMessage::Kind::Container, 4242, ""});
    for (size_t chunk = 1; chunk <= wire.size(); ++chunk) {
        SyncDecoder d;
        std::vector<SyncMessage> got;
        for (size_t off = 0; off < wire.size(); off += chunk) {
            d.feed(std::string_view(wire).substr(off, chunk));
            while (auto m = d.next()) got.push_back(*m);
        }
        ASSERT_EQ(got.size(), 3u) << "chunk " << chunk;
        EXPECT_EQ(got[0].kind, SyncMessage::Kind::Monitor);
        EXPECT_EQ(got[0].pid, 42);
        EXPECT_EQ(got[1].kind, SyncMessage::Kind::Error);
        EXPECT_EQ(got[1].text, "line one\nline two\n");
        EXPECT_EQ(got[2].pid, 4242);
        EXPECT_TRUE(d.empty());
    }
}

TEST(SyncPipe, MalformedHeaderIsAnError) {
    SyncDecoder d;
    d.feed("bogus 1 0\n");
    EXPECT_THROW(d.next(), Error);
}

// A stand-in crisd-conmon: a shell script that speaks the sync/start pipes.
std::string fake_conmon(const TempDir& d, const std::string& after_start) {
    const std::string path = d.path() + "/fake-conmon";
    // Like the real one, the process crisd starts exits at once; the monitor goes on.
    std::ofstream(path) << "#!/bin/sh\n(\n"
                           "printf 'monitor 4242 0\\n' >&3\n"
                           "head -c1 <&4 >/dev/null || exit 0\n"
                        << after_start << "\n) &\n";
    ::chmod(path.c_str(), 0755);
    return path;
}

Config fake_config(const std::string& conmon) {
    Config c;
    c.conmon_path = conmon;
    c.id = std::string(64, 'f');
    c.bundle = "/b";
    c.runtime_path = "/usr/sbin/runc";
    c.exit_dir = "/e";
    c.socket_dir = "/s";
    return c;
}

TEST(Launch, HandshakeGivesMonitorAndContainerPid) {
    TempDir d;
    auto l = Launch::spawn(fake_config(fake_conmon(d, "printf 'container 777 0\\n' >&3")));
    EXPECT_EQ(l.monitor_pid(), 4242);
    l.release();
    EXPECT_EQ(l.wait_created(5s), 777);
}

TEST(Launch, RuntimeErrorComesBackWordForWord) {
    TempDir d;
    const std::string text = "time=\"x\" level=error msg=\"runc create failed: no such file: config.json\"";
    auto l = Launch::spawn(fake_config(fake_conmon(d, "printf 'error -1 " + std::to_string(text.size()) +
                                                        "\\n%s' '" + text + "' >&3")));
    l.release();
    try {
        l.wait_created(5s);
        FAIL() << "no error";
    } catch (const RuntimeError& e) {
        EXPECT_EQ(std::string(e.what()), text);
    }
}

TEST(Launch, MonitorThatDiesIsReported) {
    TempDir d;
    auto l = Launch::spawn(fake_config(fake_conmon(d, "exit 1")));
    l.release();
    try {
        l.wait_created(5s);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exited before it sent the container's pid"), std::string::npos)
            << e.what();
    }
}

TEST(Launch, SilentMonitorTimesOut) {
    TempDir d;
    auto l = Launch::spawn(fake_config(fake_conmon(d, "sleep 1")));
    l.release();
    try {
        l.wait_created(200ms);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DeadlineExceeded) << e.what();
    }
}

TEST(Launch, MissingBinaryIsNamed) {
    try {
        Launch::spawn(fake_config("/nonexistent/crisd-conmon"));
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/crisd-conmon"), std::string::npos) << e.what();
    }
}

}  // namespace

// A stand-in control socket answering one exec with `packets`, then the exit.
TEST(ExecSync, StdoutAndStderrTogetherKeptUpToTheTotalCapInArrivalOrder) {
    TempDir dir;
    auto listener = listen_seqpacket(dir.path() + "/" + kControlSocketName);
    std::string request;
    std::thread conmon([&] {
        UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        ASSERT_TRUE(conn);
        char buf[kMaxPacket];
        const auto n = ::recv(conn.get(), buf, sizeof buf, 0);
        request.assign(buf, static_cast<size_t>(std::max<ssize_t>(n, 0)));
        for (const auto& p : {std::string("O") + std::string(600, 'o'), std::string("E") + std::string(600, 'e'),
                              std::string("O") + std::string(600, 'p'), std::string("E") + std::string(10, 'f'),
                              std::string("X 3 0")})
            ASSERT_EQ(::send(conn.get(), p.data(), p.size(), MSG_NOSIGNAL), static_cast<ssize_t>(p.size()));
    });
    const auto r = exec_sync(dir.path(), {"sh", "-c", "x"}, 5s, 1000, 1000);
    conmon.join();
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.out, std::string(600, 'o'));
    EXPECT_EQ(r.err, std::string(400, 'e'));
    EXPECT_EQ(request.substr(0, 5), std::string("exec\0", 5));
    EXPECT_NE(request.find(std::string(1, '\0') + "1000" + std::string(1, '\0')), std::string::npos)
        << "conmon's own cap";
}

