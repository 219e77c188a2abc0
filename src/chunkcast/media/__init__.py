"""ffmpeg knowledge: argv builders (pure), probing, process supervision, MP4 inspection."""
