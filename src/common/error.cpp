#include "common/error.hpp"

#include <cerrno>
#include <cstring>

namespace crisd {

const char* code_name(Code code) noexcept {
    switch (code) {
    case Code::Ok: return "OK";
    case Code::Cancelled: return "CANCELLED";
    case Code::Unknown: return "UNKNOWN";
    case Code::InvalidArgument: return "INVALID_ARGUMENT";
    case Code::DeadlineExceeded: return "DEADLINE_EXCEEDED";
    case Code::NotFound: return "NOT_FOUND";
    case Code::AlreadyExists: return "ALREADY_EXISTS";
    case Code::PermissionDenied: return "PERMISSION_DENIED";
    case Code::ResourceExhausted: return "RESOURCE_EXHAUSTED";
    case Code::FailedPrecondition: return "FAILED_PRECONDITION";
    case Code::Aborted: return "ABORTED";
    case Code::OutOfRange: return "OUT_OF_RANGE";
    case Code::Unimplemented: return "UNIMPLEMENTED";
    case Code::Internal: return "INTERNAL";
    case Code::Unavailable: return "UNAVAILABLE";
    case Code::DataLoss: return "DATA_LOSS";
    case Code::Unauthenticated: return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}

Error sys_error(const std::string& what, int err) {
    Code code = Code::Internal;
    switch (err) {
    case EACCES:
    case EPERM: code = Code::PermissionDenied; break;
    case ENOENT: code = Code::NotFound; break;
    case EEXIST: code = Code::AlreadyExists; break;
    default: break;
    }
    return Error(code, what + ": " + std::strerror(err), err);
}

void throw_sys(const std::string& what, int err) { throw sys_error(what, err); }

void throw_errno(const std::string& what) { throw_sys(what, errno); }

}  // namespace crisd
