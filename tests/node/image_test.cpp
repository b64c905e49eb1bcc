// The CRI ImageService against the node's registries (tests/images/README.md):
// every test image, auth, digests, mirrors, concurrency, removal, bad input,
// and a pull killed half way.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "cri_client.hpp"
#include "node_test.hpp"

using namespace crisd::node;
using crisd::test::CallError;
using crisd::test::CriClient;
namespace v1 = ::runtime::v1;

namespace {

const std::string kReg = "127.0.0.1:5000";
const std::string kAuthReg = "127.0.0.1:5001";
const std::string kStore = "/var/lib/crisd/images";

// repo:tag -> manifest digest, from the image cache's images.txt.
std::string manifest_digest(const std::string& repo_tag) {
    std::ifstream in("/var/lib/crisd-test-images/images.txt");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ss(line);
        std::string reg, ref, type, digest;
        std::getline(ss, reg, '\t');
        std::getline(ss, ref, '\t');
        std::getline(ss, type, '\t');
        std::getline(ss, digest, '\t');
        if (ref == repo_tag) return digest;
    }
    ADD_FAILURE() << repo_tag << " is not in images.txt";
    return "";
}

CriClient client(std::chrono::seconds timeout = std::chrono::seconds(180)) {
    return CriClient(kCriSocket, timeout);
}

std::string pull(CriClient& c, const std::string& ref, const v1::AuthConfig* auth = nullptr) {
    v1::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    if (auth) *req.mutable_auth() = *auth;
    return c.call(&v1::ImageService::Stub::PullImage, "PullImage", req).image_ref();
}

grpc::Status try_pull(CriClient& c, const std::string& ref, const v1::AuthConfig* auth = nullptr) {
    v1::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    if (auth) *req.mutable_auth() = *auth;
    v1::PullImageResponse resp;
    return c.try_call(&v1::ImageService::Stub::PullImage, req, &resp);
}

v1::ImageStatusResponse status(CriClient& c, const std::string& ref, bool verbose = false) {
    v1::ImageStatusRequest req;
    req.mutable_image()->set_image(ref);
    req.set_verbose(verbose);
    return c.call(&v1::ImageService::Stub::ImageStatus, "ImageStatus", req);
}

void remove(CriClient& c, const std::string& ref) {
    v1::RemoveImageRequest req;
    req.mutable_image()->set_image(ref);
    c.call(&v1::ImageService::Stub::RemoveImage, "RemoveImage", req);
}

bool has(const google::protobuf::RepeatedPtrField<std::string>& list, const std::string& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
}

std::string hex(const std::string& id) { return id.substr(id.find(':') + 1); }

// The image's layers as the store keeps them, lowest first.
std::vector<std::string> layer_digests(CriClient& c, const std::string& ref) {
    const auto st = status(c, ref, true);
    std::vector<std::string> out;
    const std::string info = st.info().at("info");
    // "layers":["sha256:..",..]
    const auto start = info.find("\"layers\":[");
    const auto end = info.find(']', start);
    std::string list = info.substr(start + 10, end - start - 10);
    std::size_t p = 0;
    while ((p = list.find("sha256:", p)) != std::string::npos) {
        out.push_back(list.substr(p, 71));
        p += 71;
    }
    return out;
}

// Mounts an overlay of the image's layers (as a container rootfs would be)
// on DIR/merged and returns DIR; unmounted and removed by the destructor.
struct TestOverlay {
    std::string dir;
    TestOverlay(CriClient& c, const std::string& ref, const std::string& name) : dir("/tmp/overlay-" + name) {
        std::string lowers;
        const auto layers = layer_digests(c, ref);
        for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
            const auto link = must("cat " + kStore + "/layers/" + hex(*it) + "/link");
            lowers += (lowers.empty() ? "" : ":") + std::string("l/") + link;
        }
        must("rm -rf " + dir + " && mkdir -p " + dir + "/upper " + dir + "/work " + dir + "/merged");
        must("cd " + kStore + " && mount -t overlay overlay -o lowerdir=" + lowers + ",upperdir=" + dir +
             "/upper,workdir=" + dir + "/work " + dir + "/merged");
    }
    ~TestOverlay() { sh("umount " + dir + "/merged; rm -rf " + dir); }
    std::string merged() const { return dir + "/merged"; }
};

}  // namespace

TEST(ImagePull, BusyboxByTagReportsIdTagsDigestsAndSize) {
    auto c = client();
    const std::string id = pull(c, kReg + "/busybox");
    EXPECT_TRUE(id.starts_with("sha256:")) << id;
    EXPECT_EQ(id.size(), 71u);
    const auto st = status(c, kReg + "/busybox:latest");
    ASSERT_TRUE(st.has_image());
    EXPECT_EQ(st.image().id(), id);
    EXPECT_TRUE(has(st.image().repo_tags(), kReg + "/busybox:latest"));
    EXPECT_TRUE(has(st.image().repo_digests(), kReg + "/busybox@" + manifest_digest("busybox:latest")));
    EXPECT_GT(st.image().size(), 500000u);
    EXPECT_EQ(st.image().uid().value(), 0);
    // By id, id prefix and short name (unqualified-search-registries) too.
    EXPECT_EQ(status(c, id).image().id(), id);
    EXPECT_EQ(status(c, hex(id).substr(0, 12)).image().id(), id);
    EXPECT_EQ(status(c, "busybox").image().id(), id);

    v1::ListImagesRequest all;
    const auto list = c.call(&v1::ImageService::Stub::ListImages, "ListImages", all);
    EXPECT_TRUE(std::any_of(list.images().begin(), list.images().end(), [&](const auto& i) { return i.id() == id; }));
    v1::ListImagesRequest one;
    one.mutable_filter()->mutable_image()->set_image(kReg + "/busybox:latest");
    const auto filtered = c.call(&v1::ImageService::Stub::ListImages, "ListImages", one);
    ASSERT_EQ(filtered.images_size(), 1);
    EXPECT_EQ(filtered.images(0).id(), id);
    one.mutable_filter()->mutable_image()->set_image(kReg + "/nothing:here");
    EXPECT_EQ(c.call(&v1::ImageService::Stub::ListImages, "ListImages", one).images_size(), 0);

    // Verbose: the image config.
    const auto verbose = status(c, id, true);
    ASSERT_TRUE(verbose.info().count("info"));
    EXPECT_NE(verbose.info().at("info").find("io.crisd.test.image"), std::string::npos);
}

TEST(ImagePull, EveryTestImage) {
    auto c = client();
    for (const std::string ref : {"busybox:oci", "busybox:zstd", "plain:latest", "layers:latest", "config:latest",
                                  "config:numeric", "multiarch:latest", "multiarch:docker"}) {
        SCOPED_TRACE(ref);
        std::string id;
        try {
            id = pull(c, kReg + "/" + ref);
        } catch (const CallError& e) {
            ADD_FAILURE() << e.what();
            continue;
        }
        const auto st = status(c, kReg + "/" + ref);
        EXPECT_EQ(st.image().id(), id);
        EXPECT_TRUE(has(st.image().repo_digests(), kReg + "/" + ref.substr(0, ref.find(':')) + "@" + manifest_digest(ref)));
    }
    EXPECT_EQ(status(c, kReg + "/config:latest").image().username(), "app");
    EXPECT_FALSE(status(c, kReg + "/config:latest").image().has_uid());
    EXPECT_EQ(status(c, kReg + "/config:numeric").image().uid().value(), 1000);
    // The same layer (busybox:latest and busybox:oci) is stored once.
    const auto a = layer_digests(c, kReg + "/busybox:latest");
    const auto b = layer_digests(c, kReg + "/busybox:oci");
    EXPECT_EQ(a, b);
}

TEST(ImagePull, LayersUnpackToTheExpectedRootfs) {
    auto c = client();
    pull(c, kReg + "/layers:latest");
    TestOverlay o(c, kReg + "/layers:latest", "layers");
    const auto r = sh("chroot " + o.merged() + " /bin/sh /check.sh");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("layers: OK"), std::string::npos) << r.out;
    EXPECT_EQ(must("ls " + o.merged() + "/data | tr '\\n' ' '"), "changed.txt keep.txt ");
    EXPECT_EQ(must("ls -A " + o.merged() + "/opq | tr '\\n' ' '"), "new.txt ");
    EXPECT_EQ(must("ls -A " + o.merged() + "/dirgone | tr '\\n' ' '"), "again.txt ");
    EXPECT_EQ(must("stat -c '%a %u:%g' " + o.merged() + "/perm/owned.txt " + o.merged() + "/perm/appdir"),
              "640 1000:1000\n750 1000:1000\n");
    EXPECT_EQ(must("stat -c '%i %h' " + o.merged() + "/links/target.txt"),
              must("stat -c '%i %h' " + o.merged() + "/links/hard.txt"));
    EXPECT_EQ(must("readlink " + o.merged() + "/links/abs"), "/data/keep.txt\n");
    EXPECT_EQ(sh("find " + o.merged() + " -name '.wh.*' | head -1").out, "");
    EXPECT_NE(sh("test -e " + o.merged() + "/usr/bin/wget").exit_code, 0);
    const auto x = sh("python3 -c \"import os; print(os.getxattr('" + o.merged() + "/xattr/file.txt', 'user.crisd').decode())\"");
    if (x.exit_code == 0) {
        EXPECT_EQ(x.out, "test\n");
    } else {
        std::cerr << "user xattrs not available here: " << x.out << "\n";
    }
}

TEST(ImagePull, ZstdPlainAndMultiarchContent) {
    auto c = client();
    pull(c, kReg + "/busybox:zstd");
    pull(c, kReg + "/plain:latest");
    pull(c, kReg + "/multiarch:latest");
    {
        TestOverlay o(c, kReg + "/busybox:zstd", "zstd");
        EXPECT_EQ(must("cat " + o.merged() + "/zstd.txt"), "zstd\n");
        EXPECT_EQ(must("chroot " + o.merged() + " /bin/echo ok"), "ok\n");
    }
    {
        TestOverlay o(c, kReg + "/plain:latest", "plain");
        EXPECT_EQ(must("cat " + o.merged() + "/plain.txt"), "plain\n");
    }
    {
        TestOverlay o(c, kReg + "/multiarch:latest", "multiarch");
        EXPECT_EQ(must("cat " + o.merged() + "/arch"), "amd64\n");
    }
    const auto st = try_pull(c, kReg + "/multiarch:arm64-only");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    EXPECT_NE(st.error_message().find("no image for linux/amd64"), std::string::npos) << st.error_message();
}

TEST(ImagePull, ByDigest) {
    auto c = client();
    const std::string digest = manifest_digest("busybox:latest");
    const std::string id = pull(c, kReg + "/busybox@" + digest);
    EXPECT_EQ(status(c, kReg + "/busybox@" + digest).image().id(), id);
    EXPECT_EQ(pull(c, kReg + "/busybox:latest"), id);
    const std::string mdigest = manifest_digest("multiarch:latest");
    const std::string mid = pull(c, kReg + "/multiarch@" + mdigest);
    EXPECT_TRUE(has(status(c, mid).image().repo_digests(), kReg + "/multiarch@" + mdigest));
    // A digest the registry does not have.
    const auto st = try_pull(c, kReg + "/busybox@sha256:" + std::string(64, '0'));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
}

TEST(ImagePull, PrivateRegistryWantsCredentials) {
    auto c = client();
    const std::string ref = kAuthReg + "/private/busybox";
    remove(c, ref);
    auto st = try_pull(c, ref);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    v1::AuthConfig bad;
    bad.set_username("crisd");
    bad.set_password("wrong");
    st = try_pull(c, ref, &bad);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    v1::AuthConfig good;
    good.set_username("crisd");
    good.set_password("crisd-test");
    const std::string id = pull(c, ref, &good);
    EXPECT_EQ(id, pull(c, kReg + "/busybox:latest")) << "same image as busybox:latest";
    remove(c, ref);
    v1::AuthConfig encoded;
    encoded.set_auth("Y3Jpc2Q6Y3Jpc2QtdGVzdA==");
    EXPECT_EQ(pull(c, ref, &encoded), id);
    // The open registry does not have it.
    st = try_pull(c, kReg + "/private/busybox");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
}

TEST(ImagePull, AuthFileIsUsed) {
    auto c = client();
    const std::string ref = kAuthReg + "/private/busybox";
    remove(c, ref);
    must("mkdir -p /run/containers/0 && echo '{\"auths\":{\"127.0.0.1:5001\":{\"auth\":\"Y3Jpc2Q6Y3Jpc2QtdGVzdA==\"}}}' "
         "> /run/containers/0/auth.json");
    const auto st = try_pull(c, ref);
    sh("rm -f /run/containers/0/auth.json");
    EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST(ImagePull, Mirrors) {
    auto c = client();
    // /etc/containers is read-only in the node: lay a writable copy over it.
    must("rm -rf /tmp/containers-etc && cp -a /etc/containers /tmp/containers-etc && "
         "mkdir -p /tmp/containers-etc/registries.conf.d && mount --bind /tmp/containers-etc /etc/containers");
    must("printf '[[registry]]\\nprefix = \"mirror.invalid/library\"\\nlocation = \"mirror.invalid/library\"\\n"
         "[[registry.mirror]]\\nlocation = \"127.0.0.1:5998\"\\ninsecure = true\\n"
         "[[registry.mirror]]\\nlocation = \"127.0.0.1:5000\"\\ninsecure = true\\n'"
         " > /etc/containers/registries.conf.d/50-mirror.conf");
    const auto st = try_pull(c, "mirror.invalid/library/busybox:latest");
    v1::ImageStatusResponse s;
    if (st.ok()) s = status(c, "mirror.invalid/library/busybox:latest");
    // A blocked registry is refused.
    must("printf '[[registry]]\\nlocation = \"blocked.invalid\"\\nblocked = true\\n'"
         " > /etc/containers/registries.conf.d/60-blocked.conf");
    const auto blocked = try_pull(c, "blocked.invalid/busybox");
    sh("umount /etc/containers; rm -rf /tmp/containers-etc");
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_TRUE(has(s.image().repo_tags(), "mirror.invalid/library/busybox:latest"));
    EXPECT_EQ(blocked.error_code(), grpc::StatusCode::PERMISSION_DENIED) << blocked.error_message();
    remove(c, "mirror.invalid/library/busybox:latest");
}

TEST(ImagePull, ConcurrentPullsDoTheWorkOnce) {
    auto c = client();
    remove(c, kReg + "/layers:latest");
    // The journal from here on (a cursor: timestamps have only seconds).
    std::string cursor = must("journalctl -u crisd.service -n 0 --show-cursor --no-pager");
    cursor = cursor.substr(cursor.find("cursor: ") + 8);
    while (!cursor.empty() && cursor.back() == '\n') cursor.pop_back();
    std::string ids[3];
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i)
        threads.emplace_back([&, i] {
            auto ci = client();
            try {
                ids[i] = pull(ci, kReg + "/layers:latest");
            } catch (const std::exception& e) {
                ids[i] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(ids[0], ids[1]);
    EXPECT_EQ(ids[1], ids[2]);
    EXPECT_TRUE(ids[0].starts_with("sha256:")) << ids[0];
    const auto log = must("journalctl -u crisd.service --no-pager -o cat --after-cursor=" + quote(cursor));
    std::size_t fetched = 0, p = 0;
    while ((p = log.find("bytes fetched in", p)) != std::string::npos) ++fetched, ++p;
    // busybox's layer may already be there; the other three layers are fetched once each.
    EXPECT_LE(fetched, 4u) << log;
    EXPECT_NE(log.find("joining the pull in progress"), std::string::npos) << log;
}

TEST(ImageRemove, ByIdTagAndDigestFreesUnusedLayers) {
    auto c = client();
    remove(c, kReg + "/config:numeric");  // has the same layers
    const std::string id = pull(c, kReg + "/config:latest");
    const auto layers = layer_digests(c, id);
    ASSERT_EQ(layers.size(), 2u);
    pull(c, kReg + "/busybox:latest");  // shares the lowest layer
    remove(c, id);
    EXPECT_FALSE(status(c, id).has_image());
    EXPECT_EQ(sh("test -d " + kStore + "/layers/" + hex(layers[1])).exit_code, 1) << "unused layer kept";
    EXPECT_EQ(sh("test -d " + kStore + "/layers/" + hex(layers[0])).exit_code, 0) << "shared layer removed";
    // By tag and by digest; removing what is not there is fine (CRI: idempotent).
    pull(c, kReg + "/config:latest");
    remove(c, kReg + "/config:latest");
    EXPECT_FALSE(status(c, kReg + "/config:latest").has_image());
    const std::string digest = manifest_digest("config:latest");
    pull(c, kReg + "/config@" + digest);
    remove(c, kReg + "/config@" + digest);
    EXPECT_FALSE(status(c, id).has_image());
    remove(c, kReg + "/config:latest");
    remove(c, "sha256:" + std::string(64, 'e'));
    // A second tag of one image: removing one tag keeps the image.
    pull(c, kReg + "/busybox:latest");
    const std::string bid = pull(c, kAuthReg + "/private/busybox", [] {
        static v1::AuthConfig a;
        a.set_username("crisd");
        a.set_password("crisd-test");
        return &a;
    }());
    remove(c, kAuthReg + "/private/busybox:latest");
    EXPECT_EQ(status(c, kReg + "/busybox:latest").image().id(), bid);
}

TEST(ImageBadInput, ClearStatuses) {
    auto c = client();
    auto st = try_pull(c, kReg + "/no-such-image");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    st = try_pull(c, kReg + "/busybox:no-such-tag");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    st = try_pull(c, "Not/A:Valid:Reference");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    st = try_pull(c, "");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    const auto t0 = std::chrono::steady_clock::now();
    st = try_pull(c, "127.0.0.1:5998/busybox");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    st = try_pull(c, "10.255.255.1:5000/busybox");
    EXPECT_NE(st.error_code(), grpc::StatusCode::OK);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(40));
    // The same registry under a name registries.conf does not mark insecure:
    // HTTPS only, which a plain-HTTP registry cannot answer.
    st = try_pull(c, "localhost:5000/busybox");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    EXPECT_NE(st.error_message().find("https://localhost:5000/"), std::string::npos) << st.error_message();
    EXPECT_FALSE(status(c, kReg + "/no-such-image").has_image());
    EXPECT_EQ(must("ls -A " + kStore + "/tmp"), "") << "a failed pull left something behind";
}

TEST(ImageFs, InfoCountsTheStore) {
    auto c = client();
    pull(c, kReg + "/busybox:latest");
    const auto r = c.call(&v1::ImageService::Stub::ImageFsInfo, "ImageFsInfo", v1::ImageFsInfoRequest());
    ASSERT_EQ(r.image_filesystems_size(), 1);
    EXPECT_EQ(r.image_filesystems(0).fs_id().mountpoint(), kStore);
    EXPECT_GT(r.image_filesystems(0).used_bytes().value(), 1000000u);
    EXPECT_GT(r.image_filesystems(0).inodes_used().value(), 20u);
    EXPECT_GT(r.image_filesystems(0).timestamp(), 0);
}

TEST(ImageCrash, KilledPullLeavesNothingHalfAndThenCompletes) {
    auto c = client();
    remove(c, kReg + "/big:latest");
    std::atomic<bool> done{false};
    std::thread t([&] {
        auto ci = client();
        try_pull(ci, kReg + "/big:latest");
        done = true;
    });
    // Kill crisd once some of big's layers are being fetched.
    bool staged = false;
    for (int i = 0; i < 400 && !done && !staged; ++i) {
        staged = sh("ls " + kStore + "/tmp | grep -q layer-").exit_code == 0;
        if (!staged) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    must("systemctl kill -s KILL crisd.service");
    t.join();
    EXPECT_TRUE(staged) << "the pull finished before it could be killed";
    ASSERT_TRUE(wait_unit_state("crisd.service", "inactive", 10) || true);
    sh("systemctl reset-failed crisd.service");
    // The next crisd cleans the staging area and shows no half image.
    EXPECT_FALSE(status(c, kReg + "/big:latest").has_image());
    EXPECT_EQ(must("ls -A " + kStore + "/tmp"), "");
    const std::string id = pull(c, kReg + "/big:latest");
    EXPECT_TRUE(id.starts_with("sha256:"));
    TestOverlay o(c, kReg + "/big:latest", "big");
    const auto r = sh("chroot " + o.merged() + " /bin/sh -c 'cd /big && sha256sum -c SHA256SUMS'");
    EXPECT_EQ(r.exit_code, 0) << r.out;
}

// A second crisd with a short no-progress timeout, against a fake registry on
// 127.0.0.1:5999 that misbehaves on purpose (wrong digests, malformed
// manifests, truncated blobs, silence).
namespace {

const char* kFakeRegistry = R"PY(
import hashlib, http.server, io, json, socketserver, tarfile, time
def digest(b): return "sha256:" + hashlib.sha256(b).hexdigest()
config = b'{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}'
wrong_diff_id = b'{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:' + b"0" * 64 + b'"]}}'
def config_for(repo): return wrong_diff_id if repo == "baddiffid" else config
def make_layer(repo):
    # One layer per repository, so none is already in the store.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = (repo.encode() + bytes(range(256))) * 4096
        info = tarfile.TarInfo("fake.bin"); info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
def manifest(repo):
    layer = make_layer(repo)
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config_for(repo)), "size": len(config_for(repo))},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}]}).encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, code, body, ctype="application/json", length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
    def do_GET(self):
        p = self.path
        if p == "/v2/": return self.send(200, b"{}")
        auth = self.headers.get("Authorization", "")
        if p.startswith("/token?"):
            # The token service: "bearer" wants crisd:crisd-test, "anon-bearer" anyone.
            if "repository%3Abearer%3Apull" in p:
                if auth != "Basic Y3Jpc2Q6Y3Jpc2QtdGVzdA==": return self.send(401, b'{"details":"bad credentials"}')
                return self.send(200, b'{"token":"good-token"}')
            if "repository%3Aanon-bearer%3Apull" in p: return self.send(200, b'{"access_token":"anon-token"}')
            return self.send(400, b"{}")
        repo = p.split("/")[2] if p.count("/") >= 3 else ""
        want = {"bearer": "Bearer good-token", "anon-bearer": "Bearer anon-token"}.get(repo)
        if want and auth != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="http://127.0.0.1:5999/token",service="fake",scope="repository:%s:pull"' % repo)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "/manifests/" in p:
            if repo == "stall": time.sleep(120); return
            if repo == "badmanifest": return self.send(200, b"{not json", "application/vnd.oci.image.manifest.v1+json")
            return self.send(200, manifest(repo), "application/vnd.oci.image.manifest.v1+json")
        if "/blobs/" in p:
            d = p.rsplit("/", 1)[1]
            if d == digest(config_for(repo)):
                if repo == "badconfig": return self.send(200, config.replace(b"amd64", b"AMD64"))
                return self.send(200, config_for(repo))
            layer = make_layer(repo)
            if repo == "truncated":
                self.send(200, layer[: len(layer) // 2], "application/octet-stream", len(layer))
                self.connection.shutdown(2); return
            if repo == "slowblob":
                self.send(200, layer[:1000], "application/octet-stream", len(layer)); time.sleep(120); return
            if repo == "badlayer": return self.send(200, layer[:-1] + b"x", "application/octet-stream")
            if repo == "trickle":
                # Slow but never stalled: a piece every 0.5 s for about 7 s.
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(layer)))
                self.end_headers()
                step = len(layer) // 14 + 1
                for i in range(0, len(layer), step):
                    self.wfile.write(layer[i:i + step]); self.wfile.flush(); time.sleep(0.5)
                return
            return self.send(200, layer, "application/octet-stream")
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", 5999), H).serve_forever()
)PY";

class ImageFaults : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        sh("systemctl stop crisd-fault-registry crisd-fault-test 2>/dev/null; systemctl reset-failed crisd-fault-registry "
           "crisd-fault-test 2>/dev/null; rm -rf /tmp/faults");
        must("mkdir -p /tmp/faults/etc");
        std::ofstream("/tmp/faults/registry.py") << kFakeRegistry;
        std::ofstream("/tmp/faults/etc/registries.conf")
            << "[[registry]]\nlocation = \"127.0.0.1:5999\"\ninsecure = true\n"
               "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n";
        std::ofstream("/tmp/faults/etc/crisd.conf")
            << "[crisd.image]\npull_progress_timeout = 3\nregistry_connect_timeout = 5\n"
               "registries_conf = \"/tmp/faults/etc/registries.conf\"\n";
        must("systemd-run --unit=crisd-fault-registry python3 /tmp/faults/registry.py");
        must("systemd-run --unit=crisd-fault-test /usr/bin/crisd --config /tmp/faults/etc/crisd.conf "
             "--config-dir /tmp/faults/etc/none --listen /tmp/faults/crisd.sock --root /tmp/faults/root "
             "--runroot /tmp/faults/run");
        for (int i = 0; i < 100 && sh("test -S /tmp/faults/crisd.sock").exit_code != 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        for (int i = 0; i < 100 && sh("bash -c 'exec 3<>/dev/tcp/127.0.0.1/5999' 2>/dev/null").exit_code != 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    static void TearDownTestSuite() {
        sh("systemctl stop crisd-fault-registry crisd-fault-test; rm -rf /tmp/faults");
    }
    CriClient fault_client() { return CriClient("/tmp/faults/crisd.sock", std::chrono::seconds(60)); }
    void expect_clean() { EXPECT_EQ(must("ls -A /tmp/faults/root/images/tmp"), ""); }
};

}  // namespace

TEST_F(ImageFaults, GoodImageFromTheFakeRegistryWorks) {
    auto c = fault_client();
    const auto st = try_pull(c, "127.0.0.1:5999/good");
    EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(ImageFaults, DigestMismatchesAreDataLoss) {
    auto c = fault_client();
    for (const char* repo : {"badconfig", "badlayer"}) {
        const auto st = try_pull(c, std::string("127.0.0.1:5999/") + repo);
        EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << repo << ": " << st.error_message();
        EXPECT_NE(st.error_message().find("digest mismatch"), std::string::npos) << st.error_message();
    }
    // A layer whose uncompressed content is not the config's diff_id.
    auto d = try_pull(c, "127.0.0.1:5999/baddiffid");
    EXPECT_EQ(d.error_code(), grpc::StatusCode::DATA_LOSS) << d.error_message();
    EXPECT_NE(d.error_message().find("the image config says"), std::string::npos) << d.error_message();
    // A manifest that is not the digest asked for.
    const auto st = try_pull(c, "127.0.0.1:5999/good@sha256:" + std::string(64, '1'));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
    expect_clean();
}

TEST_F(ImageFaults, MalformedManifestAndTruncatedBlob) {
    auto c = fault_client();
    auto st = try_pull(c, "127.0.0.1:5999/badmanifest");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    st = try_pull(c, "127.0.0.1:5999/truncated");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
    expect_clean();
    EXPECT_FALSE(status(c, "127.0.0.1:5999/truncated").has_image());
}

TEST_F(ImageFaults, NoProgressTimesOut) {
    auto c = fault_client();
    for (const char* repo : {"stall", "slowblob"}) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto st = try_pull(c, std::string("127.0.0.1:5999/") + repo);
        const auto took = std::chrono::steady_clock::now() - t0;
        EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << repo << ": " << st.error_message();
        EXPECT_NE(st.error_message().find("no progress for 3 s"), std::string::npos) << st.error_message();
        EXPECT_LT(took, std::chrono::seconds(15)) << repo;
    }
    expect_clean();
}

TEST_F(ImageFaults, BearerTokenFlow) {
    auto c = fault_client();
    auto st = try_pull(c, "127.0.0.1:5999/anon-bearer");
    EXPECT_TRUE(st.ok()) << st.error_message();
    st = try_pull(c, "127.0.0.1:5999/bearer");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    v1::AuthConfig bad;
    bad.set_username("crisd");
    bad.set_password("nope");
    st = try_pull(c, "127.0.0.1:5999/bearer", &bad);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    v1::AuthConfig good;
    good.set_username("crisd");
    good.set_password("crisd-test");
    st = try_pull(c, "127.0.0.1:5999/bearer", &good);
    EXPECT_TRUE(st.ok()) << st.error_message();
}

// image::Rootfs (overlay mounts, many layers, in-use marks, restart) and the
// layer unpacker on the node's own file systems (tmpfs), as root: the unit
// test binaries built next to this suite, run here. (The CRI path to Rootfs is
// CreateContainer, which the runtime adds.)
TEST(ImageRootfs, OverlayAndUnpackOnTheNode) {
    std::string exe(4096, '\0');
    exe.resize(static_cast<std::size_t>(std::max<ssize_t>(0, ::readlink("/proc/self/exe", exe.data(), exe.size()))));
    const std::string unit = exe.substr(0, exe.rfind('/')) + "/../unit/";
    for (const char* t : {"rootfs_test", "unpack_test"}) {
        const auto r = sh(unit + t);
        EXPECT_EQ(r.exit_code, 0) << t << ":\n" << r.out;
        EXPECT_NE(r.out.find("[  PASSED  ]"), std::string::npos) << r.out;
        EXPECT_EQ(r.out.find("SKIPPED"), std::string::npos) << r.out;
    }
    EXPECT_EQ(sh("grep -c crisd-rootfs-test /proc/self/mountinfo").out, "0\n") << "a test mount leaked";
}

TEST_F(ImageFaults, SlowPullLogsProgressAndIsNotCancelled) {
    auto c = fault_client();
    const auto st = try_pull(c, "127.0.0.1:5999/trickle");
    EXPECT_TRUE(st.ok()) << st.error_message();
    const auto log = must("journalctl -u crisd-fault-test --no-pager -o cat");
    EXPECT_NE(log.find("pull 127.0.0.1:5999/trickle: "), std::string::npos) << log;
    EXPECT_NE(log.find(" MiB"), std::string::npos) << log;
}

// /etc/containers/policy.json: "reject" refuses, signature requirements are
// refused (not verified), the rest follows "default".
TEST(ImagePolicy, RejectAndSignatureRequirements) {
    auto c = client();
    must("rm -rf /tmp/containers-etc && cp -a /etc/containers /tmp/containers-etc && "
         "mount --bind /tmp/containers-etc /etc/containers");
    must("printf '%s' '{\"default\":[{\"type\":\"insecureAcceptAnything\"}],\"transports\":{\"docker\":{"
         "\"127.0.0.1:5000/plain\":[{\"type\":\"reject\"}],"
         "\"127.0.0.1:5000/config\":[{\"type\":\"signedBy\",\"keyType\":\"GPGKeys\",\"keyPath\":\"/nonexistent\"}]}}}'"
         " > /etc/containers/policy.json");
    const auto rejected = try_pull(c, kReg + "/plain:latest");
    const auto unsigned_ = try_pull(c, kReg + "/config:latest");
    const auto allowed = try_pull(c, kReg + "/busybox:latest");
    sh("umount /etc/containers; rm -rf /tmp/containers-etc");
    EXPECT_EQ(rejected.error_code(), grpc::StatusCode::PERMISSION_DENIED) << rejected.error_message();
    EXPECT_EQ(unsigned_.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << unsigned_.error_message();
    EXPECT_TRUE(allowed.ok()) << allowed.error_message();
}
