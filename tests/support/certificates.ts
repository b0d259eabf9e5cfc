/**
 * Certificates made by openssl for a test: a CA, a server certificate for
 * "localhost" and a client certificate that the CA signed, and a second,
 * unrelated CA with a client certificate of its own (one the server must
 * refuse).
 */

/** Paths of the PEM files {@linkcode certificates} made. */
export interface TestCertificates {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A client certificate and key signed by another CA. */
  readonly strangerCert: string;
  readonly strangerKey: string;
}

/** Makes the certificates in a new folder and returns their paths. */
export async function certificates(): Promise<TestCertificates> {
  const dir = await Deno.makeTempDir({ prefix: "usershard-tls-" });
  const openssl = async (...args: string[]) => {
    const output = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
    if (!output.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
  };
  // Names here have no spaces, so each command is one string split on them.
  const newCa = (name: string) =>
    openssl(
      ...`req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=${name} -keyout ${name}.key -out ${name}.pem`.split(" "),
    );
  // rustls refuses version 1 certificates, which openssl makes when no extension is given.
  const signed = async (name: string, ca: string, extensions: string) => {
    await Deno.writeTextFile(`${dir}/${name}.ext`, extensions);
    await openssl(...`req -newkey rsa:2048 -nodes -subj /CN=${name} -keyout ${name}.key -out ${name}.csr`.split(" "));
    await openssl(
      ...`x509 -req -CAcreateserial -days 2 -in ${name}.csr -CA ${ca}.pem -CAkey ${ca}.key -extfile ${name}.ext -out ${name}.pem`
        .split(" "),
    );
  };
  await newCa("ca");
  await newCa("stranger-ca");
  // Both names: a node advertises its management endpoint to the others by address.
  await signed("localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await signed("client", "ca", "extendedKeyUsage=clientAuth\n");
  await signed("stranger", "stranger-ca", "extendedKeyUsage=clientAuth\n");
  return {
    ca: `${dir}/ca.pem`,
    cert: `${dir}/localhost.pem`,
    key: `${dir}/localhost.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
    strangerCert: `${dir}/stranger.pem`,
    strangerKey: `${dir}/stranger.key`,
  };
}
