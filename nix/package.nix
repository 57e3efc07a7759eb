# lorad, built from this checkout with nixpkgs' Rust builder. The daemon only: the benchmarks
# and the Solidity toolchain stay out of the package. Tests are not run here (they need the
# default model, which the build sandbox cannot fetch); scripts/test-all.sh runs them.
{ lib, rustPlatform, pkg-config, python3 }:

let
  cargoToml = lib.importTOML ../daemon/Cargo.toml;
  workspaceToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "lorad";
  version = workspaceToml.workspace.package.version;

  src = lib.cleanSourceWith {
    src = ../.;
    # Keep out what is never part of a build: fetched tools, results, editor state.
    filter = path: type:
      let base = baseNameOf path; in
      !(builtins.elem base [ "node_modules" "target" "results" ".git" ]);
  };

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "-p" "lorad" ];
  doCheck = false;

  nativeBuildInputs = [ pkg-config ];
  # `lorad model fetch` downloads the default model with pip.
  propagatedBuildInputs = [ (python3.withPackages (ps: [ ps.pip ])) ];

  postInstall = ''
    install -Dm644 systemd/lorad.service $out/lib/systemd/system/lorad.service
    substituteInPlace $out/lib/systemd/system/lorad.service --replace-fail /usr/bin/lorad $out/bin/lorad
    install -Dm644 systemd/lorad.sysusers $out/lib/sysusers.d/lorad.conf
    install -Dm644 systemd/lorad.tmpfiles $out/lib/tmpfiles.d/lorad.conf
    install -Dm644 systemd/lorad.toml $out/share/lorad/lorad.toml
    install -Dm644 docs/configuration.md $out/share/doc/lorad/configuration.md
  '';

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.asl20;
    mainProgram = "lorad";
    platforms = lib.platforms.linux;
  };
}
