#include "cri/call.hpp"

namespace crisd::cri {

grpc::Status to_status(const Error& error) {
    return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(error.code())),
                        error.what());
}

std::uint64_t next_request_id() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
}

std::atomic<int>& calls_in_flight_counter() {
    static std::atomic<int> count{0};
    return count;
}

int calls_in_flight() { return calls_in_flight_counter().load(); }

void unimplemented(const char* rpc) {
    throw Error(Code::Unimplemented, std::string("crisd: ") + rpc + " is not implemented yet");
}

}  // namespace crisd::cri
