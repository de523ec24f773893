// A page feature's choices kept in localStorage under one key, as JSON. Storage can be missing or
// refuse (private mode, quota): the choices then last for this visit only, and nothing breaks.

/**
 * The saved choices under `key`, keeping only the names `defaults` knows (old versions' keys drop out).
 * @template {object} T
 * @param {Storage | null | undefined} storage
 * @param {string} key
 * @param {T} defaults
 * @returns {Partial<T>}
 */
export function loadSaved(storage, key, defaults) {
  try {
    const saved = JSON.parse(storage?.getItem(key) ?? "{}");
    return Object.fromEntries(Object.entries(saved).filter(([name]) => name in defaults));
  } catch {
    return {};
  }
}

/**
 * @param {Storage | null | undefined} storage
 * @param {string} key
 * @param {object} choices
 */
export function save(storage, key, choices) {
  try {
    storage?.setItem(key, JSON.stringify(choices));
  } catch {
    // Unavailable storage: the choice lasts for this visit only.
  }
}
