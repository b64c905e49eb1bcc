// io.crisd.Daemon1 as an operator uses it: busctl against the crisd that the
// node runs (crisd.service, socket- or bus-activated), with the installed bus
// policy: root may call the methods, anyone may read the properties.
#include <gtest/gtest.h>

#include <chrono>

#include <nlohmann/json.hpp>

#include "cri_client.hpp"
#include "node_test.hpp"

using namespace crisd::node;
using crisd::test::CriClient;
using json = nlohmann::json;

namespace {

const std::string kBusctlArgs = " io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1 ";
const std::string kNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";

json busctl_json(const std::string& args) {
    const auto out = must("busctl --json=short " + args);
    try {
        return json::parse(out);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "busctl printed no JSON: " << out;
        return json();
    }
}

json property(const std::string& name) {
    return busctl_json("get-property" + kBusctlArgs + name)["data"];
}

void ensure_crisd() {
    must("systemctl start crisd.service");
    // The name is taken after the CRI is served; wait for it.
    ASSERT_EQ(sh("for i in $(seq 100); do busctl status io.crisd.Daemon1 >/dev/null 2>&1 && exit 0; "
                 "sleep 0.1; done; exit 1")
                  .exit_code,
              0)
        << must("journalctl -u crisd.service --no-pager -n 20");
}

}  // namespace

TEST(DbusStatus, BusActivationStartsCrisd) {
    must("systemctl stop crisd.service");
    ASSERT_TRUE(wait_unit_state("crisd.service", "inactive", 30));
    // Reading a property of the (unowned) name starts crisd.service.
    const auto v = sh("busctl get-property" + kBusctlArgs + "Version");
    EXPECT_EQ(v.exit_code, 0) << v.out;
    EXPECT_EQ(unit_property("crisd.service", "ActiveState"), "active");
}

TEST(DbusStatus, IntrospectShowsTheInterface) {
    ensure_crisd();
    const auto out = must("busctl introspect io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1");
    for (const char* member : {".Status", ".ListContainers", ".ContainerStarted", ".ContainerExited", ".Version",
                               ".RuntimeReady", ".NetworkReady", ".Pods", ".Containers", ".RunningContainers",
                               ".Images", ".StreamAddress", ".StartedAt"})
        EXPECT_NE(out.find(member), std::string::npos) << member << " missing in\n" << out;
    EXPECT_EQ(sh(kNobody + "busctl introspect io.crisd.Daemon1 /io/crisd/Daemon1").exit_code, 0);
}

TEST(DbusStatus, EveryPropertyReads) {
    ensure_crisd();
    const auto version = must("crisd --version");
    EXPECT_NE(version.find(property("Version").get<std::string>()), std::string::npos) << version;

    CriClient client(kCriSocket);
    const auto st = client.status(false);
    for (const auto& c : st.status().conditions()) {
        if (c.type() == "RuntimeReady" || c.type() == "NetworkReady") {
            EXPECT_EQ(property(c.type()).get<bool>(), c.status()) << c.type();
        }
    }
    // No pod or container services yet: honest zeros.
    for (const char* p : {"Pods", "Containers", "RunningContainers"})
        EXPECT_EQ(property(p).get<std::uint32_t>(), 0u) << p;
    // Images: as many as ListImages lists.
    const auto images = client.call(&::runtime::v1::ImageService::Stub::ListImages, "ListImages",
                                    ::runtime::v1::ListImagesRequest());
    EXPECT_EQ(property("Images").get<std::uint32_t>(), static_cast<std::uint32_t>(images.images_size()));
    // StreamAddress: the streaming server's host:port (127.0.0.1 and a port by default).
    const auto stream = property("StreamAddress").get<std::string>();
    EXPECT_EQ(stream.rfind("127.0.0.1:", 0), 0u) << stream;
    EXPECT_GT(std::stoi(stream.substr(10)), 0) << stream;

    // StartedAt: when crisd.service's process started (same clock, usec).
    const auto started = property("StartedAt").get<std::uint64_t>();
    const auto exec_start = std::stoull(unit_property("crisd.service", "ExecMainStartTimestampMonotonic"));
    const auto now_mono = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now().time_since_epoch()).count();
    const auto now_real = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
    const auto expected = static_cast<std::int64_t>(now_real - (now_mono - static_cast<std::int64_t>(exec_start)));
    EXPECT_LT(std::llabs(static_cast<std::int64_t>(started) - expected), 5'000'000) << started << " vs " << expected;

    // GetAll, and a user that is not root reads them too.
    const auto all = busctl_json("call io.crisd.Daemon1 /io/crisd/Daemon1 org.freedesktop.DBus.Properties GetAll s "
                                 "io.crisd.Daemon1");
    EXPECT_EQ(all["data"][0].size(), 9u) << all.dump();
    const auto nobody = sh(kNobody + "busctl get-property" + kBusctlArgs +
                           "Version RuntimeReady NetworkReady Pods Containers RunningContainers Images "
                           "StreamAddress StartedAt");
    EXPECT_EQ(nobody.exit_code, 0) << nobody.out;
}

TEST(DbusStatus, StatusIsTheVerboseCriStatus) {
    ensure_crisd();
    const auto reply = busctl_json("call" + kBusctlArgs + "Status");
    ASSERT_EQ(reply["type"], "a(sbss)asa{ss}") << reply.dump();
    const auto& data = reply["data"];
    CriClient client(kCriSocket);
    const auto st = client.status(true);
    ASSERT_EQ(data[0].size(), static_cast<size_t>(st.status().conditions_size()));
    for (int i = 0; i < st.status().conditions_size(); ++i) {
        const auto& c = st.status().conditions(i);
        EXPECT_EQ(data[0][i][0], c.type());
        EXPECT_EQ(data[0][i][1], c.status());
        EXPECT_EQ(data[0][i][2], c.reason());
        EXPECT_EQ(data[0][i][3], c.message());
    }
    std::vector<std::string> handlers;
    for (const auto& h : st.runtime_handlers()) handlers.push_back(h.name());
    EXPECT_EQ(data[1].get<std::vector<std::string>>(), handlers);
    for (const auto& [k, v] : st.info()) EXPECT_EQ(data[2][k], v) << k;
    EXPECT_EQ(data[2].size(), st.info().size());
}

TEST(DbusStatus, ListContainers) {
    ensure_crisd();
    const auto reply = busctl_json("call" + kBusctlArgs + "ListContainers");
    EXPECT_EQ(reply["type"], "a(sssss)");
    EXPECT_TRUE(reply["data"][0].empty()) << "no container service yet: " << reply.dump();
}

TEST(DbusStatus, MethodsAreForRootOnly) {
    ensure_crisd();
    for (const char* method : {"Status", "ListContainers"}) {
        const auto r = sh(kNobody + "busctl call" + kBusctlArgs + method);
        EXPECT_NE(r.exit_code, 0) << method << ": " << r.out;
        EXPECT_NE(r.out.find("Access denied"), std::string::npos) << method << ": " << r.out;
    }
    EXPECT_EQ(sh(kNobody + "busctl get-property" + kBusctlArgs + "Pods").exit_code, 0);
}

TEST(DbusStatus, OnlyRootOwnsTheName) {
    ensure_crisd();
    // Another process may not take the name, nor an unprivileged user.
    const auto r = sh(kNobody + "busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus "
                                "RequestName su io.crisd.Daemon1 0");
    EXPECT_NE(r.exit_code, 0) << r.out;
}

TEST(DbusStatus, CrisdTakesTheNameBackAfterABusRestart) {
    ensure_crisd();
    const auto pid = unit_property("crisd.service", "MainPID");
    must("systemctl restart dbus.service");
    EXPECT_EQ(sh("for i in $(seq 150); do busctl status io.crisd.Daemon1 >/dev/null 2>&1 && exit 0; "
                 "sleep 0.1; done; exit 1")
                  .exit_code,
              0);
    EXPECT_EQ(unit_property("crisd.service", "MainPID"), pid) << "the same crisd, reconnected";
    EXPECT_EQ(property("Pods").get<std::uint32_t>(), 0u);
}
