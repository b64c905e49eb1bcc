// CNI: config parsing, the plugin protocol, chaining, rollback, the cache and
// the config watch, with fake plugins (shell scripts) in a temp dir.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "config/config.hpp"
#include "network/cni.hpp"
#include "network/network.hpp"

namespace fs = std::filesystem;
using namespace crisd;
using json = nlohmann::json;

namespace {

class CniTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/crisd-cni-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        fs::create_directories(dir_ + "/net.d");
        fs::create_directories(dir_ + "/bin");
        cfg_ = config::defaults().network;
        cfg_.network_dir = dir_ + "/net.d";
        cfg_.plugin_dirs = {dir_ + "/nothing-here", dir_ + "/bin"};
        cfg_.plugin_timeout = 5;
        // loopback: always succeeds; logs its calls like the others.
        plugin("loopback", R"(echo "$CNI_COMMAND $CNI_IFNAME loopback" >> )" + calls() +
                               R"(; [ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0"}'; exit 0)");
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string calls() const { return dir_ + "/calls.log"; }
    std::string read(const std::string& path) const {
        std::ifstream in(path);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    void write(const std::string& path, const std::string& text) const { std::ofstream(path) << text; }
    // A fake plugin: `body` is shell run with the CNI environment; stdin is the config.
    void plugin(const std::string& name, const std::string& body) const {
        const std::string path = dir_ + "/bin/" + name;
        write(path, "#!/bin/sh\n" + body + "\n");
        ::chmod(path.c_str(), 0755);
    }
    // A plugin that records its call and stdin and answers ADD with an IP.
    void recording_plugin(const std::string& name, const std::string& ip) const {
        plugin(name, "cat > " + dir_ + "/stdin-" + name + "-$CNI_COMMAND.json\n"
                     "echo \"$CNI_COMMAND $CNI_IFNAME " + name + " $CNI_CONTAINERID $CNI_NETNS $CNI_ARGS\" >> " + calls() + "\n"
                     "if [ \"$CNI_COMMAND\" = ADD ]; then echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"" + ip + "/24\"}]}'; fi");
    }
    network::PodNetwork pod(const std::string& id = "pod1") const {
        network::PodNetwork p;
        p.pod_id = id;
        p.name = "web";
        p.ns = "default";
        p.uid = "uid-1";
        p.netns = dir_ + "/netns-" + id;
        write(p.netns, "");
        p.port_mappings = {{"tcp", 80, 8080, ""}, {"tcp", 81, 0, ""}};
        return p;
    }

    std::string dir_;
    config::Config::Network cfg_;
};

}  // namespace

TEST(CniConfig, ParsesAListAndASingleConf) {
    const auto l = network::cni::ConfigList::parse(
        R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]})", "f", false);
    EXPECT_EQ(l.name, "n");
    EXPECT_EQ(l.plugins.size(), 2u);
    const auto c = network::cni::ConfigList::parse(R"({"cniVersion":"0.3.1","name":"s","type":"bridge"})",
                                                   "g", true);
    EXPECT_EQ(c.plugins.size(), 1u);
    EXPECT_EQ(c.plugins[0]["type"], "bridge");
    EXPECT_EQ(c.cni_version, "0.3.1");
}

TEST(CniConfig, RejectsBadConfigsWithTheFileName) {
    auto fails = [](const std::string& text, bool single, const std::string& expect) {
        try {
            network::cni::ConfigList::parse(text, "/etc/cni/net.d/x.conflist", single);
            ADD_FAILURE() << text;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("/etc/cni/net.d/x.conflist: " + expect), std::string::npos)
                << e.what();
        }
    };
    fails("{", false, "invalid JSON");
    fails(R"({"cniVersion":"1.0.0","plugins":[{"type":"a"}]})", false, "no network name");
    fails(R"({"cniVersion":"9.9.9","name":"n","plugins":[{"type":"a"}]})", false, "cniVersion 9.9.9");
    fails(R"({"cniVersion":"1.0.0","name":"n","plugins":[]})", false, "no plugins");
    fails(R"({"cniVersion":"1.0.0","name":"n","plugins":[{"x":1}]})", false, "a plugin without a type");
    fails(R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]})", false, "plugin type");
    fails(R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]})", true, "a .conf file holds one plugin");
}

TEST(CniConfig, StdinCarriesOnlyDeclaredCapabilitiesAndPrevResult) {
    const auto l = network::cni::ConfigList::parse(
        R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},
            {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]})", "f", false);
    network::cni::Attachment att;
    att.capability_args = {{"portMappings", json::array({{{"hostPort", 1}}})}, {"bandwidth", {{"x", 1}}}};
    const json prev = {{"ips", json::array()}};
    const auto bridge = network::cni::plugin_stdin(l, l.plugins[0], att, nullptr);
    EXPECT_FALSE(bridge.contains("runtimeConfig"));
    EXPECT_FALSE(bridge.contains("prevResult"));
    EXPECT_EQ(bridge["name"], "n");
    EXPECT_EQ(bridge["cniVersion"], "1.0.0");
    const auto portmap = network::cni::plugin_stdin(l, l.plugins[1], att, prev);
    EXPECT_EQ(portmap["runtimeConfig"].size(), 1u);
    EXPECT_EQ(portmap["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
    EXPECT_EQ(portmap["prevResult"], prev);
}

TEST(CniConfig, ResultIps) {
    const auto ips = network::cni::result_ips(json::parse(
        R"({"ips":[{"address":"10.1.0.5/16"},{"address":"fd00::5/64","gateway":"fd00::1"}]})"));
    EXPECT_EQ(ips, (std::vector<std::string>{"10.1.0.5", "fd00::5"}));
}

TEST_F(CniTest, LoadDirTakesTheFirstValidFileInLexicalOrder) {
    write(dir_ + "/net.d/05-broken.conflist", "{not json");
    write(dir_ + "/net.d/10-b.conflist", R"({"cniVersion":"1.0.0","name":"b","plugins":[{"type":"x"}]})");
    write(dir_ + "/net.d/20-a.conf", R"({"cniVersion":"1.0.0","name":"a","type":"x"})");
    write(dir_ + "/net.d/30-ignored.txt", "whatever");
    std::vector<std::string> problems;
    const auto lists = network::cni::load_dir(dir_ + "/net.d", problems);
    ASSERT_EQ(lists.size(), 2u);
    EXPECT_EQ(lists[0].name, "b");
    EXPECT_EQ(lists[1].name, "a");
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].find("05-broken.conflist"), std::string::npos);
}

TEST_F(CniTest, NotReadyWithoutConfigOrPlugins) {
    network::Network net(cfg_, dir_ + "/state");
    auto c = net.readiness();
    EXPECT_FALSE(c.status);
    EXPECT_EQ(c.reason, "NetworkPluginNotReady");
    EXPECT_NE(c.message.find("no valid CNI network config in " + cfg_.network_dir), std::string::npos);

    write(dir_ + "/net.d/10.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"missing-plugin"}]})");
    net.reload();
    c = net.readiness();
    EXPECT_FALSE(c.status);
    EXPECT_NE(c.message.find("missing-plugin"), std::string::npos) << c.message;
    EXPECT_THROW(net.attach(pod()), Error);
}

TEST_F(CniTest, AttachChainsPluginsAndCachesTheResult) {
    recording_plugin("first", "10.0.0.5");
    recording_plugin("second", "10.0.0.6");
    write(dir_ + "/net.d/10.conflist",
          R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"},
              {"type":"second","capabilities":{"portMappings":true}}]})");
    network::Network net(cfg_, dir_ + "/state");
    ASSERT_TRUE(net.readiness().status) << net.readiness().message;
    const auto p = pod();
    EXPECT_EQ(net.attach(p), (std::vector<std::string>{"10.0.0.6"}));  // the last plugin's result

    const auto log = read(calls());
    EXPECT_EQ(log.find("ADD lo loopback"), 0u) << log;
    EXPECT_NE(log.find("ADD eth0 first pod1 " + p.netns +
                       " IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                       "K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=uid-1"),
              std::string::npos)
        << log;
    EXPECT_LT(log.find("ADD eth0 first"), log.find("ADD eth0 second"));
    const auto second = json::parse(read(dir_ + "/stdin-second-ADD.json"));
    EXPECT_EQ(second["prevResult"]["ips"][0]["address"], "10.0.0.5/24");
    ASSERT_EQ(second["runtimeConfig"]["portMappings"].size(), 1u) << "only hostPort mappings";
    EXPECT_EQ(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    EXPECT_FALSE(json::parse(read(dir_ + "/stdin-first-ADD.json")).contains("runtimeConfig"));

    // A new Network (a crisd restart) still knows the pod and can DEL it, even
    // after the config in the dir changed.
    fs::remove(dir_ + "/net.d/10.conflist");
    network::Network after_restart(cfg_, dir_ + "/state");
    EXPECT_EQ(after_restart.pod_ips("pod1"), (std::vector<std::string>{"10.0.0.6"}));
    fs::remove(calls());
    after_restart.detach(p);
    const auto del = read(calls());
    EXPECT_LT(del.find("DEL eth0 second"), del.find("DEL eth0 first")) << "DEL runs in reverse";
    EXPECT_EQ(json::parse(read(dir_ + "/stdin-first-DEL.json"))["prevResult"]["ips"][0]["address"],
              "10.0.0.6/24");
    EXPECT_TRUE(after_restart.pod_ips("pod1").empty());
    fs::remove(calls());
    after_restart.detach(p);  // idempotent
    EXPECT_FALSE(fs::exists(calls()));
}

TEST_F(CniTest, FailedAddIsRolledBackAndReportsThePluginError) {
    recording_plugin("first", "10.0.0.5");
    plugin("failing", "cat >/dev/null; if [ \"$CNI_COMMAND\" = ADD ]; then "
                      "echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no more addresses\",\"details\":\"range full\"}'; "
                      "exit 1; fi; echo \"$CNI_COMMAND failing\" >> " + calls());
    write(dir_ + "/net.d/10.conflist",
          R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"},{"type":"failing"}]})");
    network::Network net(cfg_, dir_ + "/state");
    try {
        net.attach(pod());
        FAIL();
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("pod default/web"), std::string::npos) << msg;
        EXPECT_NE(msg.find("no more addresses: range full (code 11)"), std::string::npos) << msg;
    }
    const auto log = read(calls());
    EXPECT_NE(log.find("DEL failing"), std::string::npos) << log;
    EXPECT_NE(log.find("DEL eth0 first"), std::string::npos) << log;
    EXPECT_TRUE(net.pod_ips("pod1").empty());
    EXPECT_TRUE(fs::is_empty(dir_ + "/state/results"));
}

TEST_F(CniTest, APluginThatHangsIsKilled) {
    plugin("slow", "exec sleep 30");
    write(dir_ + "/net.d/10.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"slow"}]})");
    cfg_.plugin_timeout = 1;
    network::Network net(cfg_, dir_ + "/state");
    const auto start = std::chrono::steady_clock::now();
    try {
        net.attach(pod());
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::DeadlineExceeded) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST_F(CniTest, DetachToleratesAMissingNamespace) {
    recording_plugin("first", "10.0.0.5");
    write(dir_ + "/net.d/10.conflist", R"({"cniVersion":"0.4.0","name":"n","plugins":[{"type":"first"}]})");
    network::Network net(cfg_, dir_ + "/state");
    const auto p = pod();
    net.attach(p);
    fs::remove(p.netns);
    fs::remove(calls());
    net.detach(p);
    EXPECT_NE(read(calls()).find("DEL eth0 first pod1  "), std::string::npos) << "CNI_NETNS empty";
    EXPECT_TRUE(net.pod_ips("pod1").empty());
}

TEST_F(CniTest, WatchFollowsTheConfigDir) {
    recording_plugin("first", "10.0.0.5");
    network::Network net(cfg_, dir_ + "/state");
    net.watch();
    EXPECT_FALSE(net.readiness().status);
    auto wait_for = [&](bool ready) {
        for (int i = 0; i < 100 && net.readiness().status != ready; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return net.readiness().status == ready;
    };
    write(dir_ + "/net.d/.10.tmp", R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"}]})");
    fs::rename(dir_ + "/net.d/.10.tmp", dir_ + "/net.d/10.conflist");
    EXPECT_TRUE(wait_for(true));
    EXPECT_EQ(net.network_name(), "n");
    fs::remove(dir_ + "/net.d/10.conflist");
    EXPECT_TRUE(wait_for(false));
}
