#include "server/server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace crisd::server {

GrpcServer::GrpcServer(std::vector<grpc::Service*> services, const ServerOptions& options)
    : stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!stop_fd_) throw_errno("creating an eventfd");
    grpc::ServerBuilder builder;
    for (auto* s : services) builder.RegisterService(s);
    if (options.max_send_bytes > 0) builder.SetMaxSendMessageSize(options.max_send_bytes);
    if (options.max_recv_bytes > 0) builder.SetMaxReceiveMessageSize(options.max_recv_bytes);
    server_ = builder.BuildAndStart();
    if (!server_) throw Error(Code::Internal, "starting the gRPC server failed");
}

GrpcServer::~GrpcServer() { shutdown(std::chrono::milliseconds(0)); }

void GrpcServer::serve(Listener listener) {
    listener_ = std::make_unique<Listener>(std::move(listener));
    acceptor_ = std::thread([this] { accept_loop(); });
}

void GrpcServer::accept_loop() {
    pollfd fds[2] = {{listener_->fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            spdlog::error("accept loop: poll: {}", std::strerror(errno));
            return;
        }
        if (fds[1].revents) return;
        if (!(fds[0].revents & POLLIN)) continue;
        const int conn = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (conn < 0) {
            const int err = errno;
            if (err == EINTR || err == EAGAIN || err == ECONNABORTED) continue;
            spdlog::warn("accepting a CRI connection on {}: {}", listener_->path(),
                         std::strerror(err));
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                ::poll(nullptr, 0, 100);  // let fds free up instead of spinning
            continue;
        }
        grpc::AddInsecureChannelFromFd(server_.get(), conn);  // gRPC owns conn now
    }
}

void GrpcServer::stop_accepting() {
    if (!acceptor_.joinable()) return;
    const std::uint64_t one = 1;
    if (::write(stop_fd_.get(), &one, sizeof one) < 0)
        spdlog::warn("waking the accept loop: {}", std::strerror(errno));
    acceptor_.join();
}

void GrpcServer::shutdown(std::chrono::milliseconds grace) {
    if (shut_down_) return;
    shut_down_ = true;
    stop_accepting();
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
    listener_.reset();  // unlinks a socket crisd bound itself
}

}  // namespace crisd::server
