// crisd's CNI module with the real plugins (bridge, host-local, portmap,
// firewall, loopback) and the default config that crisd ships, on network
// namespaces made by the test. Pods attached through the CRI are tested in
// pod_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "common/error.hpp"
#include "config/config.hpp"
#include "cri_client.hpp"
#include "network/network.hpp"
#include "node_test.hpp"

using namespace crisd;
using namespace crisd::node;
namespace fs = std::filesystem;

namespace {

class CniNode : public ::testing::Test {
protected:
    void SetUp() override {
        cfg_ = config::defaults().network;  // /etc/cni/net.d with the shipped config
        state_ = "/run/crisd-cni-test-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(state_);
    }
    void TearDown() override {
        for (const auto& ns : namespaces_) sh("ip netns delete " + ns);
        fs::remove_all(state_);
    }
    network::PodNetwork pod(const std::string& name) {
        must("ip netns add " + name);
        namespaces_.push_back(name);
        network::PodNetwork p;
        p.pod_id = "id-" + name;
        p.name = name;
        p.ns = "cni-test";
        p.uid = "uid-" + name;
        p.netns = "/run/netns/" + name;
        return p;
    }

    config::Config::Network cfg_;
    std::string state_;
    std::vector<std::string> namespaces_;
};

}  // namespace

TEST_F(CniNode, ShippedConfigIsReady) {
    network::Network net(cfg_, state_);
    const auto c = net.readiness();
    EXPECT_TRUE(c.status) << c.message;
    EXPECT_EQ(net.network_name(), "crisd");
}

TEST_F(CniNode, TwoPodsReachEachOtherAndDetachCleansUp) {
    network::Network net(cfg_, state_);
    auto a = pod("cni-a");
    auto b = pod("cni-b");
    const auto ips_a = net.attach(a);
    const auto ips_b = net.attach(b);
    ASSERT_EQ(ips_a.size(), 1u);
    ASSERT_EQ(ips_b.size(), 1u);
    EXPECT_EQ(ips_a[0].rfind("10.85.", 0), 0u) << ips_a[0];
    EXPECT_NE(ips_a[0], ips_b[0]);
    EXPECT_EQ(net.pod_ips(a.pod_id), ips_a);

    // lo is up (the loopback plugin) and eth0 has the address.
    EXPECT_NE(must("ip netns exec cni-a ip -o addr show dev lo").find("127.0.0.1"), std::string::npos);
    EXPECT_NE(must("ip netns exec cni-a ip -o addr show dev eth0").find(ips_a[0]), std::string::npos);
    must("ip netns exec cni-a busybox ping -c 1 -W 5 " + ips_b[0]);
    must("ip netns exec cni-b busybox ping -c 1 -W 5 " + ips_a[0]);
    // The node reaches the pod through the bridge.
    must("busybox ping -c 1 -W 5 " + ips_a[0]);

    net.detach(a);
    net.detach(b);
    net.detach(b);  // idempotent
    EXPECT_TRUE(net.pod_ips(a.pod_id).empty());
    EXPECT_NE(sh("ip netns exec cni-a ip link show eth0").exit_code, 0) << "eth0 is gone";
    // host-local released the addresses.
    const auto leases = sh("ls /var/lib/cni/networks/crisd/").out;
    EXPECT_EQ(leases.find(ips_a[0]), std::string::npos) << leases;
    EXPECT_EQ(leases.find(ips_b[0]), std::string::npos) << leases;
}

TEST_F(CniNode, HostPortReachesAServerInThePod) {
    network::Network net(cfg_, state_);
    auto p = pod("cni-web");
    p.port_mappings = {{"tcp", 80, 18080, ""}};
    const auto ips = net.attach(p);
    ASSERT_EQ(ips.size(), 1u);
    must("mkdir -p /run/cni-www && echo hello-from-pod > /run/cni-www/index.html");
    must("systemd-run --unit=cni-test-httpd --quiet ip netns exec cni-web busybox httpd -f -p 80 -h /run/cni-www");
    // Wait for the server, then reach it through the host port on the node's address.
    must("for i in $(seq 50); do ip netns exec cni-web busybox wget -q -O /dev/null http://127.0.0.1/ && break; sleep 0.1; done");
    const auto gw = must("ip -4 -o addr show dev crisd0 | awk '{print $4}' | cut -d/ -f1");
    const auto out = must("busybox wget -q -O - http://" + gw.substr(0, gw.size() - 1) + ":18080/");
    EXPECT_EQ(out, "hello-from-pod\n");
    sh("systemctl stop cni-test-httpd");
    net.detach(p);
    EXPECT_EQ(sh("iptables -t nat -S | grep -c 18080").out, "0\n") << "portmap rules removed";
}

TEST_F(CniNode, DetachWorksAfterARestartAndWithoutTheNamespace) {
    auto p = pod("cni-gone");
    {
        network::Network net(cfg_, state_);
        net.attach(p);
    }
    must("ip netns delete cni-gone");
    network::Network again(cfg_, state_);  // a crisd restart
    again.detach(p);
    EXPECT_TRUE(again.pod_ips(p.pod_id).empty());
}

TEST_F(CniNode, BrokenPluginGivesAClearErrorAndLeavesNothing) {
    must("mkdir -p /run/cni-broken/net.d /run/cni-broken/bin && cp /usr/lib/cni/loopback "
         "/usr/lib/cni/bridge /usr/lib/cni/host-local /run/cni-broken/bin/");
    std::ofstream("/run/cni-broken/bin/broken")
        << "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n"
           "echo '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"broken on purpose\"}'\nexit 1\n";
    must("chmod +x /run/cni-broken/bin/broken");
    std::ofstream("/run/cni-broken/net.d/10.conflist")
        << R"({"cniVersion":"1.0.0","name":"broken","plugins":[
              {"type":"bridge","bridge":"cnibr9","ipam":{"type":"host-local","ranges":[[{"subnet":"10.86.0.0/24"}]]}},
              {"type":"broken"}]})";
    cfg_.network_dir = "/run/cni-broken/net.d";
    cfg_.plugin_dirs = {"/run/cni-broken/bin"};
    network::Network net(cfg_, state_);
    auto p = pod("cni-broken");
    try {
        net.attach(p);
        FAIL() << "attach succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("broken on purpose"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(net.pod_ips(p.pod_id).empty());
    EXPECT_NE(sh("ip netns exec cni-broken ip link show eth0").exit_code, 0) << "bridge ADD rolled back";
    EXPECT_EQ(sh("ls /var/lib/cni/networks/broken/ 2>/dev/null | grep -c 10.86").out, "0\n");
    fs::remove_all("/run/cni-broken");
}

// crisd's NetworkReady follows /etc/cni/net.d without a restart.
TEST(CniStatus, NetworkReadyFollowsTheConfigDir) {
    auto network_ready = [] {
        const auto resp = test::CriClient(kCriSocket).status();
        for (const auto& c : resp.status().conditions())
            if (c.type() == "NetworkReady") return c.status();
        return false;
    };
    auto wait_ready = [&](bool want) {
        for (int i = 0; i < 100; ++i) {
            if (network_ready() == want) return true;
            ::usleep(50000);
        }
        return false;
    };
    must("systemctl restart crisd.service");
    EXPECT_TRUE(wait_ready(true)) << "the shipped config makes the network ready";
    must("mv /etc/cni/net.d/10-crisd-bridge.conflist /run/10-crisd-bridge.conflist.away");
    EXPECT_TRUE(wait_ready(false));
    must("mv /run/10-crisd-bridge.conflist.away /etc/cni/net.d/10-crisd-bridge.conflist");
    EXPECT_TRUE(wait_ready(true));
}
