// crisd-conmon's command line (conmon/args.hpp) and the command line crisd
// builds for it (src/monitor): they must agree.
#include <gtest/gtest.h>

#include "args.hpp"
#include "common/error.hpp"
#include "monitor/monitor.hpp"

using namespace crisd;

namespace {

const std::string kId(64, 'a');

std::vector<std::string> base() {
    return {"crisd-conmon", "--id", kId, "--bundle", "/b", "--runtime", "/usr/sbin/runc",
            "--exit-dir", "/e", "--socket-dir", "/s", "--sync-fd", "3", "--start-fd", "4"};
}

std::string error_of(std::vector<std::string> argv) {
    try {
        conmon::parse_args(argv);
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::InvalidArgument);
        return e.what();
    }
    return "";
}

TEST(ConmonArgs, Minimal) {
    const auto a = conmon::parse_args(base());
    EXPECT_EQ(a.id, kId);
    EXPECT_EQ(a.bundle, "/b");
    EXPECT_EQ(a.runtime, "/usr/sbin/runc");
    EXPECT_EQ(a.sync_fd, 3);
    EXPECT_EQ(a.start_fd, 4);
    EXPECT_FALSE(a.terminal);
    EXPECT_TRUE(a.journal);
    EXPECT_EQ(a.log_size_max, -1);
}

TEST(ConmonArgs, Everything) {
    auto argv = base();
    argv.insert(argv.end(), {"--name", "web", "--pod-name", "p", "--pod-namespace", "ns", "--runtime-arg",
                             "--root", "--runtime-arg=/run/r", "--log-path", "/l/c.log", "--log-size-max",
                             "1024", "--terminal", "--stdin", "--stdin-once", "--no-journal", "--oom-score-adj",
                             "-999"});
    const auto a = conmon::parse_args(argv);
    EXPECT_EQ(a.name, "web");
    EXPECT_EQ(a.pod_name, "p");
    EXPECT_EQ(a.pod_namespace, "ns");
    EXPECT_EQ(a.runtime_args, (std::vector<std::string>{"--root", "/run/r"}));
    EXPECT_EQ(a.log_path, "/l/c.log");
    EXPECT_EQ(a.log_size_max, 1024);
    EXPECT_TRUE(a.terminal && a.stdin && a.stdin_once);
    EXPECT_FALSE(a.journal);
    EXPECT_EQ(a.oom_score_adj, -999);
}

TEST(ConmonArgs, Errors) {
    auto bad_id = base();
    bad_id[2] = "abc";
    EXPECT_NE(error_of(bad_id).find("--id"), std::string::npos);
    auto unknown = base();
    unknown.push_back("--bogus");
    EXPECT_NE(error_of(unknown).find("unknown argument '--bogus'"), std::string::npos);
    auto missing_value = base();
    missing_value.push_back("--log-path");
    EXPECT_NE(error_of(missing_value).find("--log-path needs a value"), std::string::npos);
    auto relative = base();
    relative[4] = "bundle";
    EXPECT_NE(error_of(relative).find("--bundle: want an absolute path"), std::string::npos);
    auto once = base();
    once.push_back("--stdin-once");
    EXPECT_NE(error_of(once).find("--stdin-once needs --stdin"), std::string::npos);
    auto num = base();
    num.insert(num.end(), {"--log-size-max", "12k"});
    EXPECT_NE(error_of(num).find("--log-size-max: not an integer"), std::string::npos);
    EXPECT_NE(error_of({"crisd-conmon", "--id", kId}).find("--bundle is required"), std::string::npos);
    auto all = base();
    auto no_fds = std::vector<std::string>(all.begin(), all.begin() + 11);
    EXPECT_NE(error_of(no_fds).find("--sync-fd and --start-fd"), std::string::npos);
}

TEST(ConmonArgs, ClientCommandLineParses) {
    monitor::Config c;
    c.conmon_path = "/usr/libexec/crisd/crisd-conmon";
    c.id = kId;
    c.name = "web";
    c.pod_name = "pod";
    c.pod_namespace = "default";
    c.bundle = "/run/crisd/b";
    c.runtime_path = "/usr/bin/crun";
    c.runtime_args = {"--root", "/run/crisd/crun"};
    c.log_path = "/var/log/pods/x/0.log";
    c.exit_dir = "/run/crisd/exits";
    c.socket_dir = "/run/crisd/s";
    c.terminal = true;
    c.stdin = true;
    c.stdin_once = true;
    c.log_size_max = 4096;
    const auto argv = monitor::command_line(c, 3, 4);
    EXPECT_EQ(argv[0], c.conmon_path);
    const auto a = conmon::parse_args(argv);
    EXPECT_EQ(a.id, c.id);
    EXPECT_EQ(a.name, "web");
    EXPECT_EQ(a.pod_name, "pod");
    EXPECT_EQ(a.pod_namespace, "default");
    EXPECT_EQ(a.bundle, c.bundle);
    EXPECT_EQ(a.runtime, c.runtime_path);
    EXPECT_EQ(a.runtime_args, c.runtime_args);
    EXPECT_EQ(a.log_path, c.log_path);
    EXPECT_EQ(a.exit_dir, c.exit_dir);
    EXPECT_EQ(a.socket_dir, c.socket_dir);
    EXPECT_TRUE(a.terminal && a.stdin && a.stdin_once && a.journal);
    EXPECT_EQ(a.log_size_max, 4096);
    EXPECT_EQ(a.oom_score_adj, -999);
    EXPECT_EQ(a.sync_fd, 3);
    EXPECT_EQ(a.start_fd, 4);
}

}  // namespace
