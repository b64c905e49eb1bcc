// The CRI services served through GrpcServer over a unix socket, as a CRI
// client sees them (no systemd needed: the socket is bound by the test).
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>

#include "cri_api.hpp"
#include "config/config.hpp"
#include "cri/cri.hpp"
#include "network/network.hpp"
#include "runtime/handlers.hpp"
#include "runtime/status.hpp"
#include "server/listener.hpp"
#include "server/server.hpp"

namespace v1 = ::runtime::v1;
using namespace crisd;

class CriServer : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/crisd-cri-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        socket_ = dir_ + "/crisd.sock";
        auto cfg = config::defaults();
        // A runc that exists (the test's own shell) and a crun that does not.
        cfg.runtime.runtimes["runc"].runtime_path = "/bin/sh";
        cfg.runtime.runtimes["crun"].runtime_path = dir_ + "/no-such-crun";
        handlers_ = std::make_unique<crisd::runtime::Handlers>(cfg.runtime, "");
        cfg.network.network_dir = dir_ + "/net.d";  // empty: the network is not ready
        network_ = std::make_unique<network::Network>(cfg.network, dir_ + "/network");
        backends_ = std::make_unique<cri::Backends>(cri::Backends{*handlers_, *network_});
        runtime_ = cri::make_runtime_service(*backends_);
        image_ = cri::make_image_service(*backends_);
        server_ = std::make_unique<server::GrpcServer>(
            std::vector<grpc::Service*>{runtime_.get(), image_.get()}, server::ServerOptions{});
        server_->serve(server::Listener::bind(socket_));
        auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
        rt_ = v1::RuntimeService::NewStub(channel);
        img_ = v1::ImageService::NewStub(channel);
    }
    void TearDown() override {
        server_->shutdown(std::chrono::seconds(1));
        std::filesystem::remove_all(dir_);
    }

    std::string dir_, socket_;
    std::unique_ptr<network::Network> network_;
    std::unique_ptr<crisd::runtime::Handlers> handlers_;
    std::unique_ptr<cri::Backends> backends_;
    std::unique_ptr<grpc::Service> runtime_, image_;
    std::unique_ptr<server::GrpcServer> server_;
    std::unique_ptr<v1::RuntimeService::Stub> rt_;
    std::unique_ptr<v1::ImageService::Stub> img_;
};

TEST_F(CriServer, Version) {
    grpc::ClientContext ctx;
    v1::VersionResponse resp;
    const auto st = rt_->Version(&ctx, v1::VersionRequest(), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.runtime_name(), "crisd");
    EXPECT_EQ(resp.runtime_api_version(), "v1");
    EXPECT_FALSE(resp.runtime_version().empty());
}

TEST_F(CriServer, StatusReportsBothConditions) {
    grpc::ClientContext ctx;
    v1::StatusRequest req;
    req.set_verbose(true);
    v1::StatusResponse resp;
    ASSERT_TRUE(rt_->Status(&ctx, req, &resp).ok());
    std::map<std::string, v1::RuntimeCondition> conds;
    for (const auto& c : resp.status().conditions()) conds[c.type()] = c;
    ASSERT_EQ(conds.count("RuntimeReady"), 1u);
    EXPECT_TRUE(conds["RuntimeReady"].status());
    ASSERT_EQ(conds.count("NetworkReady"), 1u);
    EXPECT_FALSE(conds["NetworkReady"].status());
    EXPECT_FALSE(conds["NetworkReady"].reason().empty());
    EXPECT_FALSE(conds["NetworkReady"].message().empty());
    EXPECT_EQ(resp.runtime_handlers_size(), 2);
    EXPECT_NE(resp.info().at("config").find("no-such-crun"), std::string::npos);
}

TEST_F(CriServer, RuntimeNotReadyWhenTheDefaultBinaryIsMissing) {
    auto cfg = config::defaults();
    cfg.runtime.default_runtime = "crun";
    cfg.runtime.runtimes["crun"].runtime_path = dir_ + "/no-such-crun";
    crisd::runtime::Handlers h(cfg.runtime, "");
    const auto c = h.readiness();
    EXPECT_FALSE(c.status);
    EXPECT_EQ(c.reason, "RuntimeBinaryMissing");
    EXPECT_NE(c.message.find("no-such-crun"), std::string::npos);
}

TEST_F(CriServer, UnbuiltRpcsSayUnimplementedWithAMessage) {
    {
        grpc::ClientContext ctx;
        v1::RunPodSandboxResponse resp;
        const auto st = rt_->RunPodSandbox(&ctx, v1::RunPodSandboxRequest(), &resp);
        EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED);
        EXPECT_NE(st.error_message().find("RunPodSandbox is not implemented"), std::string::npos);
    }
    {
        grpc::ClientContext ctx;
        v1::PullImageResponse resp;
        const auto st = img_->PullImage(&ctx, v1::PullImageRequest(), &resp);
        EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_NE(st.error_message().find("PullImage: image is required"), std::string::npos);
    }
}

TEST_F(CriServer, UpdateRuntimeConfigKeepsThePodCidrForStatus) {
    {
        grpc::ClientContext ctx;  // no state to keep it in: not built
        v1::UpdateRuntimeConfigResponse resp;
        EXPECT_EQ(rt_->UpdateRuntimeConfig(&ctx, v1::UpdateRuntimeConfigRequest(), &resp).error_code(),
                  grpc::StatusCode::UNIMPLEMENTED);
    }
    crisd::runtime::RuntimeConfigState state;
    backends_->runtime_config = &state;
    v1::UpdateRuntimeConfigRequest req;
    req.mutable_runtime_config()->mutable_network_config()->set_pod_cidr("10.244.3.0/24,fd00:10:244:3::/64");
    {
        grpc::ClientContext ctx;
        v1::UpdateRuntimeConfigResponse resp;
        const auto st = rt_->UpdateRuntimeConfig(&ctx, req, &resp);
        EXPECT_TRUE(st.ok()) << st.error_message();
    }
    EXPECT_EQ(state.pod_cidr(), "10.244.3.0/24,fd00:10:244:3::/64");
    {
        grpc::ClientContext ctx;
        v1::StatusRequest sreq;
        sreq.set_verbose(true);
        v1::StatusResponse resp;
        ASSERT_TRUE(rt_->Status(&ctx, sreq, &resp).ok());
        EXPECT_NE(resp.info().at("config").find("\"podCIDR\":\"10.244.3.0/24,fd00:10:244:3::/64\""),
                  std::string::npos)
            << resp.info().at("config");
    }
    backends_->runtime_config = nullptr;
}

TEST_F(CriServer, RuntimeConfigSaysTheSystemdCgroupDriver) {
    grpc::ClientContext ctx;
    v1::RuntimeConfigResponse resp;
    const auto st = rt_->RuntimeConfig(&ctx, v1::RuntimeConfigRequest(), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_TRUE(resp.has_linux());  // SYSTEMD is 0: the message itself must be there
    EXPECT_EQ(resp.linux().cgroup_driver(), v1::SYSTEMD);
}

TEST_F(CriServer, ManyConcurrentClients) {
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&] {
            auto ch = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
            auto stub = v1::RuntimeService::NewStub(ch);
            for (int j = 0; j < 20; ++j) {
                grpc::ClientContext ctx;
                v1::VersionResponse resp;
                if (stub->Version(&ctx, v1::VersionRequest(), &resp).ok()) ++ok;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 160);
}
