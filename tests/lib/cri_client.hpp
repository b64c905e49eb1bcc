// A small CRI v1 client for tests, benchmarks and the README demo: typed calls
// with a deadline, and failures as CallError carrying the gRPC code.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "cri_api.hpp"

namespace crisd::test {

namespace v1 = ::runtime::v1;

class CallError : public std::runtime_error {
public:
    CallError(const std::string& rpc, const grpc::Status& status);
    grpc::StatusCode code() const noexcept { return code_; }
    const std::string& message() const noexcept { return message_; }

private:
    grpc::StatusCode code_;
    std::string message_;
};

class CriClient {
public:
    // `socket` is a path ("/run/crisd/crisd.sock") or a gRPC target ("unix:...").
    explicit CriClient(const std::string& socket,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60));

    v1::VersionResponse version();
    v1::StatusResponse status(bool verbose = false);

    // Any unary RuntimeService/ImageService call: throws CallError when not OK.
    //   client.call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req)
    template <typename Stub, typename Req, typename Resp>
    Resp call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
              const char* rpc, const Req& req) {
        Resp resp;
        auto ctx = context();
        const grpc::Status st = (stub<Stub>().*method)(ctx.get(), req, &resp);
        if (!st.ok()) throw CallError(rpc, st);
        return resp;
    }

    // The status of a call instead of an exception (for tests of failures).
    template <typename Stub, typename Req, typename Resp>
    grpc::Status try_call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                          const Req& req, Resp* resp) {
        auto ctx = context();
        return (stub<Stub>().*method)(ctx.get(), req, resp);
    }

    v1::RuntimeService::Stub& runtime() { return *runtime_; }
    v1::ImageService::Stub& image() { return *image_; }
    std::unique_ptr<grpc::ClientContext> context() const;

private:
    template <typename Stub>
    Stub& stub();

    std::chrono::milliseconds timeout_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<v1::RuntimeService::Stub> runtime_;
    std::unique_ptr<v1::ImageService::Stub> image_;
};

template <>
inline v1::RuntimeService::Stub& CriClient::stub<v1::RuntimeService::Stub>() {
    return *runtime_;
}
template <>
inline v1::ImageService::Stub& CriClient::stub<v1::ImageService::Stub>() {
    return *image_;
}

}  // namespace crisd::test
