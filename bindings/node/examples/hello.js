// Runs `echo hello` in a new box, streaming its output: node examples/hello.js
const { Runtime } = require('boxlite');

async function main() {
  const rt = await Runtime.open();
  const box = await rt.create({ memoryMib: 256 });
  try {
    const execution = await box.exec('echo', ['hello']);
    execution.stdout.pipe(process.stdout);
    const { exitCode } = await execution.wait();
    console.log(`exit code ${exitCode}`);
    execution.close();
    await box.stop();
  } finally {
    await rt.remove(box.id, { force: true }); // also when the command failed
    box.close();
    await rt.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
