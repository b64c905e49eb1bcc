// One error type for all of crisd: a gRPC status code, a message that carries
// its context ("loading /etc/crisd/crisd.conf: crisd.api.listen: expected a string"),
// and the errno it came from when there was one. It is turned into a gRPC
// status in exactly one place (src/cri/status.cpp), by its code.
#pragma once

#include <stdexcept>
#include <string>

namespace crisd {

// Numerically identical to grpc::StatusCode, without pulling in gRPC headers.
enum class Code : int {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
};

const char* code_name(Code code) noexcept;

class Error : public std::runtime_error {
public:
    Error(Code code, const std::string& message, int sys_errno = 0)
        : std::runtime_error(message), code_(code), errno_(sys_errno) {}

    Code code() const noexcept { return code_; }
    int sys_errno() const noexcept { return errno_; }

    // The same error with "context: " in front of its message.
    Error wrap(const std::string& context) const {
        return Error(code_, context + ": " + what(), errno_);
    }

private:
    Code code_;
    int errno_;
};

// An Error for a failed system call: "<what>: <strerror(err)>". EACCES/EPERM map
// to PermissionDenied, ENOENT to NotFound, EEXIST to AlreadyExists, the rest to Internal.
Error sys_error(const std::string& what, int err);
[[noreturn]] void throw_sys(const std::string& what, int err);
[[noreturn]] void throw_errno(const std::string& what);  // uses errno

// Runs fn; an Error thrown inside gets "context: " prepended.
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const Error& e) {
        throw e.wrap(context);
    }
}

}  // namespace crisd
