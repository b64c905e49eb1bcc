// crisd as systemd runs it: socket activation, Type=notify, restarts.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cri_client.hpp"
#include "node_test.hpp"

using namespace crisd::node;
using crisd::test::CriClient;

namespace {

ino_t socket_inode() {
    struct stat st {};
    EXPECT_EQ(::stat(kCriSocket, &st), 0);
    return st.st_ino;
}

}  // namespace

TEST(SocketActivation, CrisdStartsOnTheFirstConnection) {
    must("systemctl stop crisd.service");
    ASSERT_TRUE(wait_unit_state("crisd.service", "inactive", 30));
    EXPECT_EQ(unit_property("crisd.socket", "ActiveState"), "active");
    EXPECT_EQ(unit_property("crisd.service", "MainPID"), "0") << "crisd runs before any client";

    CriClient client(kCriSocket);
    const auto v = client.version();
    EXPECT_EQ(v.runtime_name(), "crisd");
    EXPECT_EQ(v.runtime_api_version(), "v1");
    EXPECT_EQ(unit_property("crisd.service", "ActiveState"), "active");
    EXPECT_NE(unit_property("crisd.service", "MainPID"), "0");
}

TEST(SocketActivation, StatusReportsConditions) {
    CriClient client(kCriSocket);
    const auto st = client.status(true);
    bool runtime_ready = false, saw_network = false;
    for (const auto& c : st.status().conditions()) {
        if (c.type() == "RuntimeReady") runtime_ready = c.status();
        if (c.type() == "NetworkReady") {
            saw_network = true;
            if (!c.status()) {
                EXPECT_FALSE(c.reason().empty());
                EXPECT_FALSE(c.message().empty());
            }
        }
    }
    EXPECT_TRUE(runtime_ready) << "runc is installed in the node";
    EXPECT_TRUE(saw_network);
    EXPECT_TRUE(st.info().count("config"));
}

TEST(SocketActivation, NotifyReadyAndStatusText) {
    CriClient(kCriSocket).version();  // make sure it runs
    EXPECT_EQ(unit_property("crisd.service", "Type"), "notify");
    EXPECT_EQ(unit_property("crisd.service", "ActiveState"), "active");
    EXPECT_EQ(unit_property("crisd.service", "SubState"), "running");
    EXPECT_EQ(unit_property("crisd.service", "StatusText"), "Serving CRI on /run/crisd/crisd.sock");
}

TEST(SocketActivation, RestartKeepsTheSocket) {
    CriClient client(kCriSocket);
    client.version();
    const auto pid_before = unit_property("crisd.service", "MainPID");
    const auto inode_before = socket_inode();

    must("systemctl restart crisd.service");
    EXPECT_EQ(unit_property("crisd.socket", "ActiveState"), "active");
    EXPECT_EQ(socket_inode(), inode_before) << "the socket file was replaced";
    EXPECT_NE(unit_property("crisd.service", "MainPID"), pid_before);
    // A new client reaches the new crisd through the same socket.
    EXPECT_EQ(CriClient(kCriSocket).version().runtime_name(), "crisd");
    // The old channel reconnects too. An idle synchronous gRPC client only sees
    // the old crisd's GOAWAY on its next call, which can then fail UNAVAILABLE
    // once (as with any runtime restart); the call after it must work.
    try {
        client.version();
    } catch (const crisd::test::CallError& e) {
        EXPECT_EQ(e.code(), grpc::StatusCode::UNAVAILABLE) << e.what();
    }
    EXPECT_EQ(client.version().runtime_name(), "crisd");
}

TEST(SocketActivation, StopIsCleanAndLogged) {
    CriClient(kCriSocket).version();
    const auto since = must("date +%s");
    must("systemctl stop crisd.service");
    EXPECT_EQ(unit_property("crisd.service", "Result"), "success");
    EXPECT_EQ(unit_property("crisd.service", "ActiveState"), "inactive");
    const auto journal =
        must("journalctl -u crisd.service --no-pager -o cat --since=@" + since.substr(0, since.size() - 1));
    EXPECT_NE(journal.find("draining requests"), std::string::npos) << journal;
    EXPECT_NE(journal.find("crisd stopped"), std::string::npos) << journal;
    EXPECT_EQ(unit_property("crisd.socket", "ActiveState"), "active");
}

TEST(SocketActivation, LogsGoToTheJournalWithPriority) {
    must("systemctl restart crisd.service");
    CriClient(kCriSocket).version();
    const auto out = must("journalctl -u crisd.service -b --no-pager -o verbose "
                          "SYSLOG_IDENTIFIER=crisd -n 50");
    EXPECT_NE(out.find("MESSAGE=crisd "), std::string::npos) << out;
    EXPECT_NE(out.find("PRIORITY=6"), std::string::npos) << out;
}
