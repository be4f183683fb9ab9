// The pod sandbox ("pause") image's program for the real-node end-to-end
// tests: no registry can be reached, so the sandbox image is built here.
module keyrotor.dev/tools/pause

go 1.26.0
