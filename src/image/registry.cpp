#include "image/registry.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <memory>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "image/digest.hpp"
#include "image/manifest.hpp"

namespace crisd::image {
namespace {

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string url_escape(const std::string& s) {
    std::string out;
    static const char* hex = "0123456789ABCDEF";
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

// A memory sink with a bound.
struct MemorySink {
    std::string data;
    std::size_t max = 0;
    bool overflow = false;
};

std::size_t memory_write(char* ptr, std::size_t size, std::size_t n, void* ud) {
    auto* s = static_cast<MemorySink*>(ud);
    const std::size_t len = size * n;
    if (s->data.size() + len > s->max) {
        s->overflow = true;
        return 0;
    }
    s->data.append(ptr, len);
    return len;
}

struct FdSink {
    int fd = -1;
    Sha256 hash;
    std::int64_t written = 0;
    std::int64_t limit = 0;
    int error = 0;
    bool overflow = false;
};

std::size_t fd_write(char* ptr, std::size_t size, std::size_t n, void* ud) {
    auto* s = static_cast<FdSink*>(ud);
    const std::size_t len = size * n;
    if (s->written + static_cast<std::int64_t>(len) > s->limit) {
        s->overflow = true;
        return 0;
    }
    std::size_t off = 0;
    while (off < len) {
        const ssize_t w = ::write(s->fd, ptr + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            s->error = errno;
            return 0;
        }
        off += static_cast<std::size_t>(w);
    }
    s->hash.update(ptr, len);
    s->written += static_cast<std::int64_t>(len);
    return len;
}

struct HeaderSink {
    std::string content_type;
    std::string www_authenticate;
};

std::size_t header_write(char* ptr, std::size_t size, std::size_t n, void* ud) {
    auto* h = static_cast<HeaderSink*>(ud);
    const std::size_t len = size * n;
    const std::string line(ptr, len);
    const auto colon = line.find(':');
    if (line.starts_with("HTTP/")) {
        // A new response (after a redirect or 100-continue): forget the last one's headers.
        *h = HeaderSink{};
    } else if (colon != std::string::npos) {
        const std::string key = lower(line.substr(0, colon));
        const std::string value = trim(line.substr(colon + 1));
        if (key == "content-type") h->content_type = value;
        if (key == "www-authenticate") h->www_authenticate = value;
    }
    return len;
}

struct XferState {
    PullProgress* progress = nullptr;
    curl_off_t last = 0;
    bool stalled = false;
    bool cancelled = false;
};

int xfer_info(void* ud, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t) {
    auto* x = static_cast<XferState*>(ud);
    if (dlnow > x->last) {
        x->progress->add_done(dlnow - x->last);
        x->last = dlnow;
    }
    if (x->progress->cancelled()) {
        x->cancelled = true;
        return 1;
    }
    if (x->progress->stalled()) {
        x->stalled = true;
        return 1;
    }
    return 0;
}

// The registry's error body: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}
std::string registry_errors(const std::string& body) {
    try {
        const auto j = nlohmann::json::parse(body);
        std::string out;
        for (const auto& e : j.at("errors")) {
            if (!out.empty()) out += "; ";
            out += e.value("code", "") + ": " + e.value("message", "");
        }
        return out;
    } catch (const std::exception&) {
        return "";
    }
}

}  // namespace

PullProgress::PullProgress(std::chrono::seconds t) : timeout_(t), last_progress_ns_(now_ns()) {}

void PullProgress::add_done(std::int64_t bytes) {
    done_ += bytes;
    last_progress_ns_ = now_ns();
}

bool PullProgress::stalled() const {
    if (timeout_.count() <= 0) return false;
    return now_ns() - last_progress_ns_.load() > std::chrono::nanoseconds(timeout_).count();
}

Challenge parse_challenge(const std::string& header) {
    Challenge c;
    const auto sp = header.find(' ');
    c.scheme = lower(header.substr(0, sp));
    if (sp == std::string::npos) return c;
    std::size_t i = sp + 1;
    while (i < header.size()) {
        while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
        const auto eq = header.find('=', i);
        if (eq == std::string::npos) break;
        const std::string key = lower(trim(header.substr(i, eq - i)));
        std::string value;
        i = eq + 1;
        if (i < header.size() && header[i] == '"') {
            ++i;
            while (i < header.size() && header[i] != '"') {
                if (header[i] == '\\' && i + 1 < header.size()) ++i;
                value += header[i++];
            }
            ++i;
        } else {
            const auto end = header.find(',', i);
            value = trim(header.substr(i, end == std::string::npos ? std::string::npos : end - i));
            i = end == std::string::npos ? header.size() : end;
        }
        if (key == "realm") c.realm = value;
        else if (key == "service") c.service = value;
        else if (key == "scope") c.scope = value;
    }
    return c;
}

RegistryClient::RegistryClient(std::string host, std::string repository, bool insecure, Credentials creds,
                               RegistryOptions options, PullProgress& progress)
    : host_(std::move(host)),
      repository_(std::move(repository)),
      insecure_(insecure),
      creds_(std::move(creds)),
      options_(options),
      progress_(progress) {
    global_init();
    if (host_ == "docker.io") host_ = "registry-1.docker.io";
    if (!creds_.registry_token.empty()) authorization_ = "Bearer " + creds_.registry_token;
}

RegistryClient::~RegistryClient() = default;

RegistryClient::Response RegistryClient::perform(const std::string& url, const std::string& accept,
                                                 std::size_t (*sink)(char*, std::size_t, std::size_t, void*),
                                                 void* sink_data, const std::string* auth_header,
                                                 const std::string* post_form) {
    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    if (!curl) throw Error(Code::Internal, "curl_easy_init failed");
    CURL* c = curl.get();
    std::unique_ptr<curl_slist, SlistDeleter> headers;
    auto add_header = [&](const std::string& h) {
        curl_slist* l = curl_slist_append(headers.get(), h.c_str());
        if (!l) throw Error(Code::Internal, "curl_slist_append failed");
        (void)headers.release();
        headers.reset(l);
    };
    if (!accept.empty()) add_header("Accept: " + accept);
    std::string auth;
    if (auth_header) {
        auth = *auth_header;
    } else {
        std::lock_guard lock(mu_);
        auth = authorization_;
    }
    if (!auth.empty()) add_header("Authorization: " + auth);
    MemorySink error_body{{}, 64 * 1024, false};
    HeaderSink hs;
    XferState xs{&progress_, 0, false, false};
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, insecure_ ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(c, CURLOPT_USERAGENT, "crisd");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hs);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_info);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &xs);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
    if (post_form) curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_form->c_str());
    if (insecure_) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    // The body goes to the sink only for a 2xx answer; error bodies are kept
    // (bounded) for the message.
    struct Dispatch {
        std::size_t (*sink)(char*, std::size_t, std::size_t, void*);
        void* data;
        MemorySink* err;
        CURL* c;
        long code = 0;
    } d{sink, sink_data, &error_body, c};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION,
                     +[](char* p, std::size_t s, std::size_t n, void* ud) -> std::size_t {
                         auto* dd = static_cast<Dispatch*>(ud);
                         if (dd->code == 0) curl_easy_getinfo(dd->c, CURLINFO_RESPONSE_CODE, &dd->code);
                         if (dd->code >= 200 && dd->code < 300) return dd->sink(p, s, n, dd->data);
                         memory_write(p, s, n, dd->err);
                         return s * n;
                     });
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    const CURLcode rc = curl_easy_perform(c);
    Response r;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    r.content_type = hs.content_type;
    r.www_authenticate = hs.www_authenticate;
    r.body = error_body.data;
    if (rc != CURLE_OK) {
        if (xs.stalled)
            throw Error(Code::DeadlineExceeded,
                        "no progress for " + std::to_string(progress_.timeout().count()) +
                            " s (crisd.image.pull_progress_timeout) fetching " + url);
        if (xs.cancelled) throw Error(Code::Cancelled, "pull cancelled while fetching " + url);
        if (rc == CURLE_WRITE_ERROR) {
            // The sink refused: it says why (size, disk); the caller checks it.
            r.status = -1;
            return r;
        }
        const std::string msg = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(": ") + errbuf : "");
        Code code = Code::Unavailable;
        if (rc == CURLE_OPERATION_TIMEDOUT) code = Code::DeadlineExceeded;
        if (rc == CURLE_PARTIAL_FILE) code = Code::DataLoss;
        throw Error(code, "fetching " + url + ": " + msg);
    }
    return r;
}

std::string RegistryClient::base_url() {
    std::lock_guard lock(mu_);
    if (scheme_.empty()) {
        if (!insecure_) {
            scheme_ = "https";
        } else {
            // Insecure: HTTPS without verification when the registry speaks
            // TLS, else plain HTTP (what containers/image does).
            scheme_ = "http";
            std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
            const std::string url = "https://" + host_ + "/v2/";
            curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
            curl_easy_setopt(curl.get(), CURLOPT_NOBODY, 1L);
            curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(curl.get(), CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(curl.get(), CURLOPT_SSL_VERIFYHOST, 0L);
            curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
            curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 10L);
            if (curl_easy_perform(curl.get()) == CURLE_OK) scheme_ = "https";
            spdlog::debug("registry {} is insecure: using {}", host_, scheme_);
        }
    }
    return scheme_ + "://" + host_;
}

RegistryClient::Response RegistryClient::get(const std::string& path, const std::string& accept,
                                             std::size_t (*sink)(char*, std::size_t, std::size_t, void*),
                                             void* sink_data) {
    const std::string url = base_url() + "/v2/" + repository_ + path;
    Response r = perform(url, accept, sink, sink_data);
    if (r.status == 401) {
        authenticate(r.www_authenticate);
        r = perform(url, accept, sink, sink_data);
        if (r.status == 401)
            throw Error(Code::Unauthenticated, "registry " + host_ + " refused the credentials for " +
                                                   repository_ + " (401 Unauthorized)");
    }
    return r;
}

void RegistryClient::authenticate(const std::string& header) {
    const Challenge ch = parse_challenge(header);
    const std::string who = "registry " + host_;
    if (ch.scheme == "basic") {
        if (creds_.username.empty())
            throw Error(Code::Unauthenticated,
                        who + " requires authentication (basic) and no credentials were given for it");
        std::lock_guard lock(mu_);
        authorization_ = "Basic " + base64_encode(creds_.username + ":" + creds_.password);
        return;
    }
    if (ch.scheme != "bearer" || ch.realm.empty())
        throw Error(Code::Unauthenticated, who + " answered 401 with an unsupported challenge \"" + header + "\"");
    const std::string scope = ch.scope.empty() ? "repository:" + repository_ + ":pull" : ch.scope;
    std::string url = ch.realm;
    std::string form;
    if (!creds_.identity_token.empty()) {
        // OAuth2 refresh-token grant (docker's identity token), as a POST form.
        form = "grant_type=refresh_token&client_id=crisd&refresh_token=" + url_escape(creds_.identity_token) +
               "&service=" + url_escape(ch.service) + "&scope=" + url_escape(scope);
    } else {
        url += ch.realm.find('?') == std::string::npos ? "?" : "&";
        if (!ch.service.empty()) url += "service=" + url_escape(ch.service) + "&";
        url += "scope=" + url_escape(scope);
    }
    // The token request carries the credentials (if any), never a token.
    std::string basic;
    if (!creds_.username.empty() && creds_.identity_token.empty())
        basic = "Basic " + base64_encode(creds_.username + ":" + creds_.password);
    MemorySink body{{}, 1 << 20, false};
    const Response r = perform(url, "application/json", memory_write, &body, &basic,
                               form.empty() ? nullptr : &form);
    if (r.status == 401 || r.status == 403)
        throw Error(Code::Unauthenticated, who + ": the token service " + ch.realm + " refused " +
                                               (basic.empty() ? "an anonymous request" : "the credentials") +
                                               " (" + std::to_string(r.status) + ")");
    if (r.status != 200) throw Error(Code::Unavailable, who + ": token service answered " + std::to_string(r.status));
    std::string token;
    try {
        const auto j = nlohmann::json::parse(body.data);
        token = j.value("token", "");
        if (token.empty()) token = j.value("access_token", "");
    } catch (const std::exception&) {
    }
    if (token.empty()) throw Error(Code::Unavailable, who + ": the token service sent no token");
    std::lock_guard lock(mu_);
    authorization_ = "Bearer " + token;
}

void RegistryClient::fail(const Response& r, const std::string& what) {
    const std::string detail = registry_errors(r.body);
    const std::string msg = what + ": registry " + host_ + " answered " + std::to_string(r.status) +
                            (detail.empty() ? "" : " (" + detail + ")");
    Code code = Code::Unknown;
    if (r.status == 404) code = Code::NotFound;
    else if (r.status == 401) code = Code::Unauthenticated;
    else if (r.status == 403) code = Code::PermissionDenied;
    else if (r.status == 429) code = Code::ResourceExhausted;
    else if (r.status >= 500) code = Code::Unavailable;
    else if (r.status >= 400) code = Code::InvalidArgument;
    throw Error(code, msg);
}

FetchedManifest RegistryClient::get_manifest(const std::string& ref) {
    const std::string what = "manifest " + host_ + "/" + repository_ + (ref.starts_with("sha256:") ? "@" : ":") + ref;
    MemorySink body{{}, 4 << 20, false};
    const Response r = get("/manifests/" + ref, manifest_accept(), memory_write, &body);
    if (r.status == -1 || body.overflow) throw Error(Code::InvalidArgument, what + ": larger than 4 MiB");
    if (r.status != 200) fail(r, what);
    FetchedManifest m{body.data, r.content_type, sha256_digest(body.data)};
    if (ref.starts_with("sha256:") && m.digest != ref)
        throw Error(Code::DataLoss, what + ": digest mismatch: got " + m.digest);
    return m;
}

std::string RegistryClient::get_blob(const std::string& digest, std::int64_t max_size) {
    const std::string what = "blob " + host_ + "/" + repository_ + "@" + digest;
    MemorySink body{{}, static_cast<std::size_t>(max_size), false};
    const Response r = get("/blobs/" + digest, "", memory_write, &body);
    if (r.status == -1 || body.overflow)
        throw Error(Code::DataLoss, what + ": larger than its " + std::to_string(max_size) + " bytes");
    if (r.status != 200) fail(r, what);
    verify_digest(body.data, digest, what);
    return body.data;
}

void RegistryClient::get_blob_to_fd(const std::string& digest, std::int64_t size, int fd) {
    const std::string what = "blob " + host_ + "/" + repository_ + "@" + digest;
    FdSink sink;
    sink.fd = fd;
    sink.limit = size;
    const Response r = get("/blobs/" + digest, "", fd_write, &sink);
    if (sink.error) throw sys_error(what + ": writing", sink.error);
    if (r.status == -1 || sink.overflow)
        throw Error(Code::DataLoss, what + ": more data than the manifest's " + std::to_string(size) + " bytes");
    if (r.status != 200) fail(r, what);
    if (sink.written != size)
        throw Error(Code::DataLoss, what + ": truncated: got " + std::to_string(sink.written) + " of " +
                                        std::to_string(size) + " bytes");
    const std::string got = sink.hash.digest();
    if (got != digest) throw Error(Code::DataLoss, what + ": digest mismatch: got " + got);
}

}  // namespace crisd::image
