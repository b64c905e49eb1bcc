// src/image pure logic: references, registries.conf, manifests, digests,
// auth files, WWW-Authenticate challenges, overlay mount options.
#include <gtest/gtest.h>

#include "common/error.hpp"
#include "image/auth.hpp"
#include "image/digest.hpp"
#include "image/manifest.hpp"
#include "image/policy.hpp"
#include "image/reference.hpp"
#include "image/registries.hpp"
#include "image/registry.hpp"
#include "image/rootfs.hpp"
#include "error_code.hpp"

using namespace crisd;
using namespace crisd::image;

using crisd::test::code_of;

namespace {

const std::string kD1 = "sha256:" + std::string(64, 'a');
const std::string kD2 = "sha256:" + std::string(64, 'b');

}  // namespace

TEST(Reference, NormalizesLikeTheEcosystem) {
    EXPECT_EQ(normalize_reference("busybox").str(), "docker.io/library/busybox:latest");
    EXPECT_EQ(normalize_reference("busybox:1.36").str(), "docker.io/library/busybox:1.36");
    EXPECT_EQ(normalize_reference("user/app").str(), "docker.io/user/app:latest");
    EXPECT_EQ(normalize_reference("docker.io/busybox").str(), "docker.io/library/busybox:latest");
    EXPECT_EQ(normalize_reference("index.docker.io/library/busybox").str(), "docker.io/library/busybox:latest");
    EXPECT_EQ(normalize_reference("quay.io/a/b/c:v1").str(), "quay.io/a/b/c:v1");
    EXPECT_EQ(normalize_reference("127.0.0.1:5000/busybox").str(), "127.0.0.1:5000/busybox:latest");
    EXPECT_EQ(normalize_reference("localhost/app").str(), "localhost/app:latest");
    const auto d = normalize_reference("127.0.0.1:5000/busybox@" + kD1);
    EXPECT_EQ(d.tag, "");
    EXPECT_EQ(d.digest, kD1);
    EXPECT_EQ(d.digested(), "127.0.0.1:5000/busybox@" + kD1);
    const auto td = normalize_reference("busybox:v1@" + kD1);
    EXPECT_EQ(td.tag, "v1");
    EXPECT_EQ(td.digest, kD1);
    const auto p = parse_reference("busybox");
    EXPECT_FALSE(p.qualified());
    EXPECT_EQ(p.tag, "");
}

TEST(Reference, RefusesMalformedNames) {
    for (const char* bad : {"", "Busybox", "busybox:", "busybox@sha256:abc", "a//b", "-a", "a:b:c",
                            "busybox:-tag", "reg.io/", "busybox@md5:00", "a__-b"}) {
        EXPECT_EQ(code_of([&] { parse_reference(bad); }), Code::InvalidArgument) << bad;
    }
    EXPECT_EQ(code_of([] { parse_reference(std::string(300, 'a')); }), Code::InvalidArgument);
}

TEST(Registries, ParsesV2AndFindsLongestPrefix) {
    const auto conf = parse_registries_conf(R"(
unqualified-search-registries = ["reg.a", "docker.io"]
[[registry]]
prefix = "example.com"
location = "example.com"
insecure = true
[[registry]]
prefix = "example.com/team"
location = "internal.example.com:5000/mirror/team"
[[registry.mirror]]
location = "m1.example.com/team"
insecure = true
[[registry.mirror]]
location = "m2.example.com/team"
pull-from-mirror = "digest-only"
[[registry]]
location = "blocked.io"
blocked = true
[[registry]]
prefix = "*.wild.io"
insecure = true
)", "test");
    ASSERT_EQ(conf.registries.size(), 4u);
    EXPECT_EQ(conf.find("example.com/x")->prefix, "example.com");
    EXPECT_EQ(conf.find("example.com/team/app")->prefix, "example.com/team");
    EXPECT_EQ(conf.find("example.com/teamx/app")->prefix, "example.com");
    EXPECT_EQ(conf.find("a.wild.io/x")->prefix, "*.wild.io");
    EXPECT_EQ(conf.find("wild.io/x"), nullptr);
    EXPECT_EQ(conf.find("other.io/x"), nullptr);

    auto srcs = pull_sources(conf, normalize_reference("example.com/team/app:v1"));
    ASSERT_EQ(srcs.size(), 2u);  // digest-only mirror skipped for a tag
    EXPECT_EQ(srcs[0].ref.str(), "m1.example.com/team/app:v1");
    EXPECT_TRUE(srcs[0].insecure);
    EXPECT_TRUE(srcs[0].mirror);
    EXPECT_EQ(srcs[1].ref.str(), "internal.example.com:5000/mirror/team/app:v1");
    EXPECT_FALSE(srcs[1].insecure);
    EXPECT_FALSE(srcs[1].mirror);
    srcs = pull_sources(conf, normalize_reference("example.com/team/app@" + kD1));
    EXPECT_EQ(srcs.size(), 3u);
    EXPECT_EQ(srcs[1].ref.str(), "m2.example.com/team/app@" + kD1);

    srcs = pull_sources(conf, normalize_reference("example.com/x"));
    ASSERT_EQ(srcs.size(), 1u);
    EXPECT_TRUE(srcs[0].insecure);
    srcs = pull_sources(conf, normalize_reference("quay.io/x"));
    ASSERT_EQ(srcs.size(), 1u);
    EXPECT_FALSE(srcs[0].insecure);
    EXPECT_EQ(code_of([&] { pull_sources(conf, normalize_reference("blocked.io/x")); }), Code::PermissionDenied);

    const auto names = resolve_short_name(conf, parse_reference("busybox"));
    ASSERT_EQ(names.size(), 2u);
    EXPECT_EQ(names[0].str(), "reg.a/busybox:latest");
    EXPECT_EQ(names[1].str(), "docker.io/library/busybox:latest");
    EXPECT_EQ(resolve_short_name(conf, parse_reference("quay.io/x")).size(), 1u);
    EXPECT_EQ(resolve_short_name(RegistriesConf{}, parse_reference("busybox"))[0].str(),
              "docker.io/library/busybox:latest");
}

TEST(Registries, DropInsMergeAndBadFilesAreRefused) {
    auto base = parse_registries_conf("unqualified-search-registries = [\"a\"]\n[[registry]]\nlocation = \"x.io\"\n", "a");
    merge_registries_conf(base, parse_registries_conf("[[registry]]\nlocation = \"x.io\"\ninsecure = true\n", "b"));
    ASSERT_EQ(base.registries.size(), 1u);
    EXPECT_TRUE(base.registries[0].insecure);
    EXPECT_EQ(base.unqualified_search, std::vector<std::string>{"a"});
    EXPECT_EQ(code_of([] { parse_registries_conf("[[registry]]\ninsecure = \"yes\"\nlocation=\"a\"", "t"); }),
              Code::InvalidArgument);
    EXPECT_EQ(code_of([] { parse_registries_conf("[[registry]]\ninsecure = true\n", "t"); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([] { parse_registries_conf("this is not toml", "t"); }), Code::InvalidArgument);
    EXPECT_TRUE(load_registries_conf("/nonexistent/registries.conf").registries.empty());
}

TEST(Manifest, ParsesSchema2OciAndIndexes) {
    const std::string docker = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
      "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":10,"digest":")" + kD1 + R"("},
      "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":20,"digest":")" + kD2 + R"("}]})";
    auto m = parse_manifest(docker);
    EXPECT_FALSE(m.is_index);
    EXPECT_EQ(m.config.digest, kD1);
    ASSERT_EQ(m.layers.size(), 1u);
    EXPECT_EQ(m.layers[0].size, 20);
    EXPECT_EQ(layer_compression(m.layers[0].media_type), Compression::Gzip);

    const std::string oci = R"({"schemaVersion":2,
      "config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":")" + kD1 + R"("},
      "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":20,"digest":")" + kD2 + R"("},
                {"mediaType":"application/vnd.oci.image.layer.v1.tar","size":20,"digest":")" + kD2 + R"("}]})";
    m = parse_manifest(oci, "application/vnd.oci.image.manifest.v1+json");
    EXPECT_EQ(m.media_type, media::kOciManifest);
    EXPECT_EQ(layer_compression(m.layers[0].media_type), Compression::Zstd);
    EXPECT_EQ(layer_compression(m.layers[1].media_type), Compression::None);

    const std::string index = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":")" + kD2 + R"(","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":")" + kD1 + R"(","platform":{"os":"linux","architecture":"amd64"}}]})";
    m = parse_manifest(index);
    ASSERT_TRUE(m.is_index);
    EXPECT_EQ(select_platform(m, {"linux", "amd64", ""}, "x").digest, kD1);
    EXPECT_EQ(select_platform(m, {"linux", "arm64", "v8"}, "x").digest, kD2);
    EXPECT_EQ(select_platform(m, {"linux", "arm64", ""}, "x").digest, kD2);
    try {
        select_platform(m, {"linux", "s390x", ""}, "multiarch:latest");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
        EXPECT_NE(std::string(e.what()).find("no image for linux/s390x"), std::string::npos) << e.what();
    }
    EXPECT_EQ(node_platform().os, "linux");
}

TEST(Manifest, RefusesMalformedOnes) {
    for (const std::string& bad : {
             std::string("not json"), std::string("[]"), std::string(R"({"schemaVersion":1})"),
             std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})"),
             std::string(R"({"schemaVersion":2,"config":{"size":1,"digest":"sha256:zz"},"layers":[]})"),
             R"({"schemaVersion":2,"config":{"size":-1,"digest":")" + kD1 + R"("},"layers":[]})",
             R"({"schemaVersion":2,"config":{"size":1,"digest":")" + kD1 +
                 R"("},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":1,"digest":")" +
                 kD1 + R"("}]})",
             std::string(R"({"schemaVersion":2,"mediaType":"text/plain"})")}) {
        EXPECT_EQ(code_of([&] { parse_manifest(bad); }), Code::InvalidArgument) << bad;
    }
    const auto c = parse_image_config(R"({"os":"linux","architecture":"amd64","config":{"User":"app"},
        "rootfs":{"type":"layers","diff_ids":[")" + kD1 + R"("]}})");
    EXPECT_EQ(c.user, "app");
    EXPECT_EQ(c.diff_ids.size(), 1u);
    EXPECT_EQ(code_of([] { parse_image_config("{"); }), Code::InvalidArgument);
    const auto full = parse_image_config(R"({"architecture":"amd64","os":"linux","config":{"User":"app",
        "Env":["PATH=/bin","FOO=bar"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hello from config"],
        "WorkingDir":"/work","StopSignal":"SIGINT","Volumes":{"/data":{}},"ExposedPorts":{"8080/tcp":{}},
        "Labels":{"io.crisd.test.image":"config"}}})");
    EXPECT_EQ(full.env, (std::vector<std::string>{"PATH=/bin", "FOO=bar"}));
    EXPECT_EQ(full.entrypoint, (std::vector<std::string>{"/bin/sh", "-c"}));
    EXPECT_EQ(full.cmd, (std::vector<std::string>{"echo hello from config"}));
    EXPECT_EQ(full.working_dir, "/work");
    EXPECT_EQ(full.stop_signal, "SIGINT");
    EXPECT_EQ(full.volumes, (std::vector<std::string>{"/data"}));
    EXPECT_EQ(full.exposed_ports, (std::vector<std::string>{"8080/tcp"}));
    EXPECT_EQ(full.labels.at("io.crisd.test.image"), "config");
}

TEST(Digest, Sha256AndVerification) {
    EXPECT_EQ(sha256_digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_digest("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_TRUE(is_sha256_digest(kD1));
    EXPECT_FALSE(is_sha256_digest("sha256:ABC"));
    EXPECT_FALSE(is_sha256_digest("sha512:" + std::string(64, 'a')));
    EXPECT_EQ(code_of([] { verify_digest("abc", kD1, "blob"); }), Code::DataLoss);
    EXPECT_EQ(code_of([] { verify_digest("", sha256_digest(""), "blob"); }), Code::Ok);
    Sha256 h;
    h.update("a", 1);
    h.update("bc", 2);
    EXPECT_EQ(h.digest(), sha256_digest("abc"));
}

TEST(Auth, AuthFilesAndBase64) {
    EXPECT_EQ(base64_encode("crisd:crisd-test"), "Y3Jpc2Q6Y3Jpc2QtdGVzdA==");
    const auto c = decode_auth("Y3Jpc2Q6Y3Jpc2QtdGVzdA==");
    EXPECT_EQ(c.username, "crisd");
    EXPECT_EQ(c.password, "crisd-test");
    EXPECT_EQ(code_of([] { decode_auth("bm9jb2xvbg=="); }), Code::InvalidArgument);
    const std::string file = R"({"auths":{
        "127.0.0.1:5001":{"auth":"Y3Jpc2Q6Y3Jpc2QtdGVzdA=="},
        "127.0.0.1:5001/private":{"auth":")" + base64_encode("p:q") + R"("},
        "https://index.docker.io/v1/":{"auth":")" + base64_encode("d:h") + R"("}}})";
    EXPECT_EQ(lookup_auth(file, "127.0.0.1:5001/other")->username, "crisd");
    EXPECT_EQ(lookup_auth(file, "127.0.0.1:5001/private/busybox")->username, "p");
    EXPECT_EQ(lookup_auth(file, "docker.io/library/busybox")->username, "d");
    EXPECT_FALSE(lookup_auth(file, "127.0.0.1:500/x").has_value());
    EXPECT_FALSE(lookup_auth(file, "127.0.0.1:50011/x").has_value());
    EXPECT_EQ(auth_files("/etc/crisd/auth.json"), std::vector<std::string>{"/etc/crisd/auth.json"});
}

TEST(Auth, ParsesChallenges) {
    auto c = parse_challenge(R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
    EXPECT_EQ(c.scheme, "bearer");
    EXPECT_EQ(c.realm, "https://auth.docker.io/token");
    EXPECT_EQ(c.service, "registry.docker.io");
    EXPECT_EQ(c.scope, "repository:library/busybox:pull");
    c = parse_challenge(R"(Basic realm="crisd-test")");
    EXPECT_EQ(c.scheme, "basic");
    EXPECT_EQ(c.realm, "crisd-test");
}

TEST(Rootfs, OverlayOptionsFitManyLayers) {
    std::vector<std::string> lowers;
    for (int i = 0; i < 280; ++i) lowers.push_back("l/ABCDEFGHIJ");
    const auto o = overlay_options(lowers, "/var/lib/crisd/rootfs/" + std::string(64, 'c') + "/upper",
                                   "/var/lib/crisd/rootfs/" + std::string(64, 'c') + "/work");
    EXPECT_TRUE(o.starts_with("lowerdir=l/ABCDEFGHIJ:l/ABCDEFGHIJ:"));
    EXPECT_LT(o.size(), 4096u);
    lowers.resize(500, "l/ABCDEFGHIJ");
    EXPECT_EQ(code_of([&] { overlay_options(lowers, "/u", "/w"); }), Code::InvalidArgument);
    EXPECT_EQ(code_of([&] { overlay_options({}, "/u", "/w"); }), Code::InvalidArgument);
}

TEST(Policy, AcceptRejectAndSignatureRequirements) {
    const std::string policy = R"({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {
            "evil.io": [{"type": "reject"}],
            "quay.io/signed": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}],
            "*.blocked.example": [{"type": "reject"}]}}})";
    EXPECT_EQ(code_of([&] { check_policy(policy, "p", normalize_reference("busybox")); }), Code::Ok);
    EXPECT_EQ(code_of([&] { check_policy(policy, "p", normalize_reference("evil.io/x/y")); }), Code::PermissionDenied);
    EXPECT_EQ(code_of([&] { check_policy(policy, "p", normalize_reference("quay.io/signed/app")); }),
              Code::FailedPrecondition);
    EXPECT_EQ(code_of([&] { check_policy(policy, "p", normalize_reference("quay.io/other")); }), Code::Ok);
    EXPECT_EQ(code_of([&] { check_policy(policy, "p", normalize_reference("a.blocked.example/x")); }),
              Code::PermissionDenied);
    EXPECT_EQ(code_of([&] { check_policy(R"({"default":[{"type":"reject"}]})", "p", normalize_reference("a/b")); }),
              Code::PermissionDenied);
    EXPECT_EQ(code_of([&] { check_policy("{", "p", normalize_reference("a/b")); }), Code::FailedPrecondition);
    EXPECT_EQ(code_of([&] { check_policy_file("/nonexistent/policy.json", normalize_reference("a/b")); }), Code::Ok);
}
