// Hosts the gRPC services on a Listener: an accept loop hands each connection
// to gRPC (grpc::AddInsecureChannelFromFd), which serves the same way whether
// the socket came from systemd or was bound by crisd.
#pragma once

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/fd.hpp"
#include "server/listener.hpp"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace crisd::server {

struct ServerOptions {
    int max_send_bytes = 0;
    int max_recv_bytes = 0;
};

class GrpcServer {
public:
    GrpcServer(std::vector<grpc::Service*> services, const ServerOptions& options);
    ~GrpcServer();
    GrpcServer(const GrpcServer&) = delete;
    GrpcServer& operator=(const GrpcServer&) = delete;

    // Starts accepting connections on `listener` (owned from here on).
    void serve(Listener listener);

    // Stops accepting new connections (clients then queue on the socket,
    // which systemd keeps when crisd was socket-activated). Idempotent.
    void stop_accepting();

    // Stops accepting, cancels what still runs once `grace` has passed, and
    // closes every connection. Idempotent.
    void shutdown(std::chrono::milliseconds grace);

private:
    void accept_loop();

    std::unique_ptr<grpc::Server> server_;
    std::unique_ptr<Listener> listener_;
    UniqueFd stop_fd_;  // eventfd that wakes the accept loop
    std::thread acceptor_;
    bool shut_down_ = false;
};

}  // namespace crisd::server
