#include "cri_client.hpp"

#include <grpcpp/grpcpp.h>

namespace crisd::test {

CallError::CallError(const std::string& rpc, const grpc::Status& status)
    : std::runtime_error(rpc + " failed: " + std::to_string(static_cast<int>(status.error_code())) +
                         " " + status.error_message()),
      code_(status.error_code()),
      message_(status.error_message()) {}

CriClient::CriClient(const std::string& socket, std::chrono::milliseconds timeout)
    : timeout_(timeout) {
    const std::string target = socket.rfind("unix:", 0) == 0 ? socket : "unix:" + socket;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(80 * 1024 * 1024);
    // Each client has its own connection, as each kubelet or crictl process does.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    runtime_ = v1::RuntimeService::NewStub(channel_);
    image_ = v1::ImageService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> CriClient::context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + timeout_);
    return ctx;
}

v1::VersionResponse CriClient::version() {
    return call(&v1::RuntimeService::Stub::Version, "Version", v1::VersionRequest());
}

v1::StatusResponse CriClient::status(bool verbose) {
    v1::StatusRequest req;
    req.set_verbose(verbose);
    return call(&v1::RuntimeService::Stub::Status, "Status", req);
}

}  // namespace crisd::test
