// The managed ChromeOS device's id, where the centre's policy lets this extension read it
// (chrome.enterprise.deviceAttributes: force-installed extensions on managed Chromebooks
// only). The centre's access log then names the Chromebook its admin console knows, instead
// of this install's random id. Anywhere else the API is missing or refuses: "" (the install
// id is used).

const DEVICE_ID = /^[A-Za-z0-9_-]{16,64}$/;

/** The directory device id, or "" when it is not available or not of the expected shape. */
export async function managedDeviceId(chromeApi = globalThis.chrome) {
  const attributes = chromeApi?.enterprise?.deviceAttributes;
  if (typeof attributes?.getDirectoryDeviceId !== "function") return "";
  try {
    const id = await new Promise((resolve) => {
      const answer = attributes.getDirectoryDeviceId((value) => resolve(value));
      if (answer && typeof answer.then === "function") answer.then(resolve, () => resolve(""));
    });
    return typeof id === "string" && DEVICE_ID.test(id) ? id : "";
  } catch {
    return "";
  }
}
